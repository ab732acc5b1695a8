"""The sandbox isolation tests and the attack battery again, as an unprivileged user.

Run as root, the sandbox takes root's paths: bubblewrap makes its namespaces without a user
namespace of its own, cgroups are writable, and the kernel ignores RLIMIT_NPROC. A user runs it
otherwise: user namespaces, no cgroups (unless delegated), RLIMIT_NPROC enforced. So when the
suite runs as root, this test creates a system user (``archagent-test``, no home, no login
shell) and runs those test files again as that user, in a pytest of their own; run by anyone
else, those files already ran unprivileged and this test skips.

The user must reach the interpreter, its packages and this checkout. Where a folder on the way
is closed to others (root's home holding pyenv, say), the child runs in a private mount
namespace (``unshare --mount``) where that folder is replaced by an open one holding only the
needed entries, bound from the real ones: nothing on the host changes but the new user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER = "archagent-test"
FILES = ["tests/sandbox/test_isolation.py", "tests/sandbox/test_process.py", "tests/security/test_battery.py"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="run unprivileged already: the isolation tests and the "
                                                           "battery ran as this user")]


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip("no useradd here to create the unprivileged test user (install the passwd package)")
    out = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                          "--shell", "/usr/sbin/nologin", USER], capture_output=True, text=True)
    if out.returncode not in (0, 9):  # 9: made meanwhile by a parallel run
        pytest.fail(f"useradd {USER} failed ({out.returncode}): {out.stderr.strip()}")
    return pwd.getpwnam(USER)


def _needed() -> list[Path]:
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent, REPO,
             Path(sysconfig.get_paths()["stdlib"]), *map(Path, site.getsitepackages())}
    paths |= {Path(p) for p in sys.path if p and Path(p).exists()}
    return sorted(p.resolve() for p in paths)


def _closed_folders(needed: list[Path]) -> dict[Path, set[str]]:
    """Folders others may not pass through, each with the entries below it that are needed.
    Only the first closed folder on each path is opened; a second one further down is reported."""
    out: dict[Path, set[str]] = {}
    for path in needed:
        parts = path.parts
        for i in range(1, len(parts)):
            folder = Path(*parts[:i])
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                out.setdefault(folder, set()).add(parts[i])
                deeper = [Path(*parts[:j]) for j in range(i + 1, len(parts))
                          if not os.stat(Path(*parts[:j])).st_mode & stat.S_IXOTH]
                if deeper:
                    pytest.skip(f"{path} is behind two closed folders ({folder}, {deeper[0]}): the unprivileged "
                                "user cannot reach the interpreter")
                break
    return out


def _script(closed: dict[Path, set[str]], views: Path) -> str:
    """Shell lines, run as root in a new mount namespace, that open each closed folder."""
    lines = ["set -e", "mount --make-rprivate /"]
    for n, (folder, entries) in enumerate(sorted(closed.items())):
        view = views / str(n)
        view.mkdir(mode=0o755)
        for entry in sorted(entries):
            real = folder / entry
            (view / entry).mkdir() if real.is_dir() else (view / entry).touch()
            lines.append(f"mount --rbind '{real}' '{view / entry}'")
        lines.append(f"mount --rbind '{view}' '{folder}'")
    return "\n".join(lines)


@pytest.fixture
def scratch():
    """A folder the user can reach (pytest's own tmp_path is under a folder closed to others)."""
    path = Path(tempfile.mkdtemp(prefix="archagent-unprivileged-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_isolation_tests_and_battery_pass_as_an_unprivileged_user(scratch):
    user = _user()
    closed = _closed_folders(_needed())
    views = scratch / "views"
    views.mkdir(mode=0o755)
    work, home = scratch / "work", scratch / "home"  # the child's temporary folders and pytest's base; its home
    for folder in (work, home):
        folder.mkdir()
        os.chown(folder, user.pw_uid, user.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(work),
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", "XDG_CACHE_HOME": str(work / "cache")}
    child = [sys.executable, "-m", "pytest", *FILES, "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
             "--basetemp", str(work / "pytest"), "-o", "addopts=-ra --strict-markers"]
    drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--", *child]
    if closed:
        probe = subprocess.run(["unshare", "--mount", "--", "sh", "-c", "mount --make-rprivate /"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"{sorted(map(str, closed))} closed to other users and no private mount namespace here to "
                        f"open them (unshare --mount: {probe.stderr.strip()[:200]})")
        argv = ["unshare", "--mount", "--", "sh", "-c", _script(closed, views) + '\nexec "$@"', "sh", *drop]
    else:
        argv = drop
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out.stdout.splitlines()[-1])}
    # the sandbox must have run as the user, not skipped: the battery and most isolation tests pass
    assert counts.get("passed", 0) >= 25, report
    skipped = re.findall(r"SKIPPED \[\d+\] (\S+): (.*)", out.stdout)
    assert not any("test_battery" in where for where, _ in skipped), report
    print(f"as {USER} (uid {user.pw_uid}): {counts}; opened for it in a mount namespace: "
          f"{ {str(k): sorted(v) for k, v in closed.items()} }")
    for where, why in skipped:
        print(f"  skipped as {USER}: {where}: {why}")
