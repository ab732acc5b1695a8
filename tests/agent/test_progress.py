"""Live progress: per-candidate training lines on a terminal, one log line per training elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from agent.progress import SearchProgress
from evaluator.pools.base import PoolEvent
from agent.records import Run
from evaluator.records import Candidate, Evaluation, Status

RUN = Run(run_id="r1", task="digits", space="layers", proposer="random", seed=0, budget=2)
CAND = Candidate(candidate_id="r1-c0000", run_id="r1", seq=0, space="layers", spec={}, canonical_key="k",
                 proposer="random", status=Status.RUNNING)
EVAL = Evaluation(candidate_id="r1-c0000", status=Status.OK, fidelity=3, val_accuracy=0.9, wall_seconds=4.2,
                  metrics={"seed": 0})
STATE = {"evaluations": 1, "top": [{"candidate_id": "r1-c0000", "val_accuracy": 0.9}]}


def _events(purpose: str = "search") -> list[PoolEvent]:
    common = {"purpose": purpose, "seed": 0}
    return [PoolEvent("started", "r1-c0000", data={"job": "j", "epochs": 3, **common}),
            *[PoolEvent("progress", "r1-c0000", data={"epoch": e, "epochs": 3, "val_accuracy": 0.5 + e / 10,
                                                       "train_loss": 1.0, **common}) for e in (1, 2)]]


def test_terminal_shows_each_training_by_epoch():
    out = io.StringIO()
    p = SearchProgress(Console(file=out, force_terminal=True, width=120))
    p.start(RUN, [])
    for e in _events():
        p.event(e)
    p._progress.refresh()  # rich redraws on a timer; draw now
    text_mid = out.getvalue()
    p.event(PoolEvent("finished", "r1-c0000", evaluation=EVAL))
    p.result(CAND, EVAL, STATE)
    p.stop()
    assert "c0000: epoch 2/3, val 0.7000" in text_mid
    assert not p._jobs


def test_a_log_gets_one_line_per_training_and_the_final_retraining():
    out = io.StringIO()
    p = SearchProgress(Console(file=out, force_terminal=False, width=200))
    p.start(RUN, ["a warning"])
    for e in _events():
        p.event(e)
    p.result(CAND, EVAL, STATE)
    for e in _events("final"):
        p.event(e)
    p.stop()
    lines = out.getvalue().splitlines()
    assert "1/2 r1-c0000: val 0.9000 (3 epochs, 4.2 s)  best val 0.9000 (r1-c0000)" in lines
    assert "final report: retraining r1-c0000 (seed 0) on the test split" in lines
    assert not any("epoch 1" in line for line in lines)  # no per-epoch noise in logs
