"""Evaluation side: search spaces, tasks and data, evaluation pools.

Imports point one way: ``agent -> evaluator -> sandbox``. Nothing here imports ``agent``.
"""
