"""Stopping training early: learning-curve forecasts (``forecast``), the rule that spends them
(``rule``) and asynchronous successive halving (``halving``)."""
