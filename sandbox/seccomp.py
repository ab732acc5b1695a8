"""A seccomp filter that takes the network away from a job (Linux x86_64 and aarch64).

The filter is a classic-BPF program built here, in the trusted process, and installed in the
child just before it runs the job: by bubblewrap (``--seccomp FD``) or, without bubblewrap, by
``install_in_child`` between fork and exec. It returns

- EPERM for every system call of a foreign architecture (i386 on x86_64, arm32 on aarch64) and
  for x32 calls: the filter only understands the native numbering, so nothing else gets past;
- EAFNOSUPPORT for ``socket()`` of any address family but AF_UNIX and AF_NETLINK (so AF_INET,
  AF_INET6, AF_PACKET, AF_VSOCK, ... fail at once; AF_UNIX pipes and the netlink socket
  bubblewrap uses to bring up loopback keep working);
- EPERM for ``io_uring_setup`` (io_uring performs network and file operations outside the
  system-call filter), ``ptrace``, ``process_vm_readv`` and ``process_vm_writev`` (without a pid
  namespace, a job running as the same user could otherwise read the coordinator's memory);
- and allows everything else.
"""

from __future__ import annotations

import errno
import functools
import platform
import struct
import sys
from collections.abc import Callable

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # both supported architectures are little-endian

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
X32_SYSCALL_BIT = 0x40000000

AF_UNIX, AF_NETLINK = 1, 16
ALLOWED_FAMILIES = (AF_UNIX, AF_NETLINK)

# machine -> (AUDIT_ARCH_*, socket, io_uring_setup, ptrace, process_vm_readv, process_vm_writev)
_ARCHES = {
    "x86_64": (0xC000003E, 41, 425, 101, 310, 311),
    "aarch64": (0xC00000B7, 198, 425, 117, 270, 271),
}

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def supported() -> str | None:
    """None when a filter can be built here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"seccomp is Linux-only (this is {sys.platform})"
    if machine() not in _ARCHES:
        return f"no filter for the {machine()} architecture (x86_64 and aarch64 only)"
    return None


def program(arch: str | None = None) -> bytes:
    """The filter as an array of ``struct sock_filter`` (what ``bwrap --seccomp`` reads)."""
    audit_arch, nr_socket, nr_io_uring, *nr_denied = _ARCHES[arch or machine()]
    ins: list[tuple[int, int | str, int | str, int]] = []  # (code, jt, jf, k); jumps name labels

    def emit(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        ins.append((code, jt, jf, k))

    labels: dict[str, int] = {}
    emit(_LD_W_ABS, _ARCH)
    emit(_JEQ, audit_arch, 0, "eperm")
    emit(_LD_W_ABS, _NR)
    emit(_JGE, X32_SYSCALL_BIT, "eperm", 0)
    for nr in (nr_io_uring, *nr_denied):
        emit(_JEQ, nr, "eperm", 0)
    emit(_JEQ, nr_socket, 0, "allow")
    emit(_LD_W_ABS, _ARG0_LOW)  # the address family (an int: the low half of args[0])
    for family in ALLOWED_FAMILIES:
        emit(_JEQ, family, "allow", 0)
    labels["eafnosupport"] = len(ins)
    emit(_RET, SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT)
    labels["allow"] = len(ins)
    emit(_RET, SECCOMP_RET_ALLOW)
    labels["eperm"] = len(ins)
    emit(_RET, SECCOMP_RET_ERRNO | errno.EPERM)

    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(ins):
        offsets = [labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
        assert all(0 <= o < 256 for o in offsets)
        out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)


@functools.cache
def _compiled() -> tuple[object, object] | None:
    """The filter as a ``struct sock_fprog`` and libc's prctl, both made in the parent."""
    if supported() is not None:
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    code = program()

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(code, len(code))
    fprog = SockFprog(len(code) // 8, ctypes.addressof(buf))
    fprog._buf = buf  # keep the instructions alive with the header
    return fprog, prctl


def install_in_child() -> Callable[[], None] | None:
    """A function for between fork and exec that installs the filter in the calling process
    (no_new_privs first, as the kernel requires without CAP_SYS_ADMIN); None where a filter
    cannot be built. Everything it needs is made now, in the parent."""
    compiled = _compiled()
    if compiled is None:
        return None
    import ctypes

    fprog, prctl = compiled
    pointer = ctypes.c_void_p(ctypes.addressof(fprog))  # type: ignore[arg-type]
    zero = ctypes.c_ulong(0)
    one = ctypes.c_ulong(1)

    def install() -> None:
        if prctl(PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) != 0:  # type: ignore[operator]
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), pointer, zero, zero) != 0:  # type: ignore[operator]
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")

    return install
