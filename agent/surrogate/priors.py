"""Priors from earlier runs: what other searches over the same space measured.

``--prior RUN_ID`` (repeatable) or ``--prior auto`` (every other run in this history over the
same space, any task). Each prior run's evaluated candidates train one surrogate, once (normal
scores of their search signal: ranks carry over between tasks, scales do not;
agent.surrogate.model); the prior's prediction for a candidate is the mean of those surrogates'.
How much the run trusts it is the selector's business (agent.surrogate.selector: the prior's
weight is how often it ranks the run's own evaluations better than the run's own surrogate
does). Without the flag a run uses no other run's data.

Checked before anything is recorded (``load_priors`` raises UserInputError naming the run and
the fix): an unknown run id, a run over another space (or another space file), a run with no
candidate that finished ok.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.surrogate.model import FeatureMatrix, GaussianSurrogate
from evaluator.errors import NotFoundError, SpecError, UserInputError
from evaluator.records import Purpose, Status
from evaluator.spaces import SearchSpace

AUTO = "auto"
MAX_POINTS = 500  # a prior run's best candidates beyond this add little and cost fitting time
SEEDS = 10  # each prior run's best candidates that join the pool at the start (``best_specs``)


@dataclass
class _PriorRun:
    run_id: str
    task: str
    rows: list[dict[str, float]]  # encodings, best first
    values: np.ndarray  # search signal (validation accuracy)
    specs: list[dict] = field(default_factory=list)  # the validated specs of ``rows``
    _fitted: tuple[FeatureMatrix, GaussianSurrogate] | None = None

    def scores(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        if self._fitted is None:  # once per run: the prior's own feature scale and surrogate
            table = FeatureMatrix(self.rows)
            self._fitted = table, GaussianSurrogate(seed=0).fit(table.matrix, self.values)
        table, model = self._fitted
        return model.predict(table.transform(list(rows))).mean


@dataclass
class PriorRuns:
    runs: list[_PriorRun] = field(default_factory=list)

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    def describe(self) -> list[dict[str, object]]:
        return [{"run_id": r.run_id, "task": r.task, "candidates": len(r.values)} for r in self.runs]

    def best_specs(self, k: int = SEEDS) -> list[dict]:
        """Each prior run's ``k`` best candidates (the portfolio puts them in its pool at the start:
        a prior's knowledge of specific cells, beside what its surrogate says of others)."""
        return [spec for run in self.runs for spec in run.specs[:k]]

    def scores(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """The prior runs' predicted scores for encodings ``rows``: the mean of their surrogates'
        predicted means (normal scores; the selector keeps the run's own uncertainty)."""
        if not self.runs:
            raise ValueError("no prior runs to predict with")
        return np.mean([run.scores(rows) for run in self.runs], axis=0)


def load_priors(recorder, refs: Sequence[str], space: SearchSpace, *, current_run: str | None = None) -> PriorRuns:
    """The runs ``refs`` names (ids, or ``auto``), checked; see the module docstring."""
    if not refs:
        return PriorRuns()
    wanted: list[str] = []
    if AUTO in refs:
        if len(refs) > 1:
            raise UserInputError("--prior auto already takes every run over this space; it cannot be combined with run ids",
                                 hint="give either --prior auto or one --prior RUN_ID per run")
        listed = recorder.list_runs() if hasattr(recorder, "list_runs") else []
        wanted = [r["run_id"] for r in listed if r["run_id"] != current_run and r["space"] == space.name]
        runs = [run for run in (_load(recorder, rid, space, strict=False) for rid in wanted) if run is not None]
        if not runs:
            raise UserInputError(f"--prior auto found no earlier run over the {space.label} space with a candidate that "
                                 "finished ok in this history",
                                 hint="run a search over this space first, or drop --prior")
        return PriorRuns(runs)
    out = []
    for ref in dict.fromkeys(refs):
        try:
            run_id = recorder.resolve_run_id(ref)
        except (NotFoundError, KeyError):
            raise UserInputError(f"--prior {ref}: there is no run {ref!r} in this history",
                                 hint="`agent history` lists the runs; give one of their ids, or --prior auto") from None
        if run_id == current_run:
            raise UserInputError(f"--prior {ref} is the run being resumed; a run cannot be its own prior",
                                 hint="drop it from --prior")
        out.append(_load(recorder, run_id, space, strict=True))
    return PriorRuns(out)


def _load(recorder, run_id: str, space: SearchSpace, *, strict: bool) -> _PriorRun | None:
    run = recorder.get_run(run_id)
    label = (run.get("config") or {}).get("space_label") or run["space"]
    candidates, evaluations = recorder.run_records(run_id)
    # another space: by name, by the recorded label (a space file's name), or specs this space refuses
    other = run["space"] != space.name or label not in (space.name, space.label) or not _fits(candidates, space)
    if other:
        if not strict:
            return None
        raise UserInputError(f"--prior {run_id}: that run searched the {label} space, this one searches {space.label}",
                             hint="a prior must be a run over the same space (any task); `agent history` shows each "
                                  "run's space")
    signal: dict[str, float] = {}
    for e in evaluations:  # the latest search evaluation of each candidate
        if e.purpose is Purpose.SEARCH and e.status is Status.OK and e.val_accuracy is not None:
            signal[e.candidate_id] = e.val_accuracy
    rows, values, specs = [], [], []
    for c in candidates:
        if c.candidate_id not in signal:
            continue
        try:
            spec = space.validate(c.spec)
            rows.append(space.encode(spec))
        except (SpecError, ValueError, SyntaxError):
            continue
        specs.append(spec)
        values.append(signal[c.candidate_id])
    if not values:
        if not strict:
            return None
        raise UserInputError(f"--prior {run_id}: that run has no candidate that finished ok, so there is nothing to learn "
                             "from it", hint="choose a run with results (`agent history` shows each run's best), or "
                                            "drop this --prior")
    order = np.argsort(values, kind="stable")[::-1][:MAX_POINTS]
    return _PriorRun(run_id=run_id, task=run["task"], rows=[rows[i] for i in order],
                     values=np.asarray(values, dtype=float)[order], specs=[specs[i] for i in order])


def _fits(candidates, space: SearchSpace) -> bool:
    """Some of the run's candidates are valid specs of ``space`` (or it has none to check)."""
    specs = [c.spec for c in candidates if c.canonical_key is not None][:20]
    if not specs:
        return True
    for spec in specs:
        try:
            space.validate(spec)
            return True
        except (SpecError, ValueError):
            continue
    return False
