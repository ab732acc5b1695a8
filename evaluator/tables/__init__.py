"""Benchmark tables read from files and checked row by row: the NAS-Bench-201 accuracy tables
(``nb201``) and recorded learning curves (``curves``), through one CSV reader (``reader``).
The pools evaluate with them (``evaluator.pools``); the user's own tables of a space file are
read by ``evaluator.pools.lookup`` through the same reader."""
