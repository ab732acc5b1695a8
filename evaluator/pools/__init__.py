"""Evaluation pools: where candidates are evaluated, behind one asynchronous interface
(``base.EvaluationPool``: submit, events, result, cancel, close).

- ``tabular``: looks NAS-Bench-201 cells up in their tables, in this process;
- ``lookup``: looks a declared space's candidates up in the user's tables (used by ``tabular``);
- ``replay``: replays recorded learning curves as if they were training (``curves:FILE``);
- ``training``: trains each candidate in a fresh sandboxed worker process on this machine;
- ``ray`` (with ``ray_cluster``): the training pool's jobs on the nodes of a Ray cluster.
"""
