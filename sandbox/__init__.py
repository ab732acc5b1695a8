"""Run one untrusted job in isolation (``sandbox.process.ChildProcess``): its own process
group, a clean environment, resource limits (address space, resident memory, CPU time, file
size, open files, processes), a wall-clock timeout that kills the whole job, and a private
signed channel.

With an ``Isolation`` (``sandbox.isolation``) the same call adds every hardened layer the
machine has, detected once by trying each (``detect_layers``): bubblewrap namespaces with a
read-only view of the system and only the scratch folder writable (or, without bubblewrap,
``unshare`` for network and pids), a seccomp filter that refuses network sockets
(``sandbox.seccomp``), cgroups for memory, processes and CPU that also let no process of the
job outlive it (``sandbox.cgroups``), and a scratch-disk quota. ``describe_isolation`` says in
one line what a job gets; ``IsolationUnavailable`` says what is missing and how to get it.

``sandbox`` knows nothing of torch models and imports nothing from ``agent`` or ``evaluator``.
"""
