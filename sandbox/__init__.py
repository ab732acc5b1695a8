"""Run one job in isolation (process, limits, no network, clean environment, protocol).

Foundation I evaluates only tabular tasks, in-process, so nothing here runs yet; the worker
process boundary arrives with real training (Foundation II). ``sandbox`` knows nothing of
torch models and imports nothing from ``agent`` or ``evaluator``.
"""
