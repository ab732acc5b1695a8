"""Run one untrusted job in isolation: its own process group, a clean environment, resource
limits (address space, resident memory, CPU time, file size, open files), a wall-clock timeout
that kills the whole group, and a private signed channel (``sandbox.process``).

``sandbox`` knows nothing of torch models and imports nothing from ``agent`` or ``evaluator``.
Network and file-system isolation (bubblewrap, seccomp, cgroups) come with the hardened sandbox.
"""
