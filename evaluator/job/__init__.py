"""What runs inside the sandbox, one process per job: the worker (``worker``: ``python -I -m
evaluator.job.worker JOB_DIR``), its messages and the trusted side's checks of them
(``protocol``), and the trainer (``trainer``). Nothing here sees a validation or test label or
computes a metric; the pools (``evaluator.pools``) start the jobs and check what they send."""
