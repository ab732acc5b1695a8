"""A run's early stopping: forecast each training candidate's final accuracy after every epoch,
stop the ones that will almost surely not beat the incumbent, and audit the rule as it goes.

The forecast uses the training accuracy the worker reports beside each epoch's validation
accuracy when every epoch has it (it ranks candidates better early on: bench/early_stopping.py).
The search graph calls ``on_epoch`` for every epoch a search candidate reports and ``on_finished``
for every result. The rule (evaluator.early_stop.rule.EarlyStopRule) rests on the run's own finished
curves: each candidate that trains to the end becomes a reference, and the best of them is the
incumbent. Every forecast becomes a ``ForecastRecord`` (drained into the history by the record
step). A seeded share of the candidates the rule would stop (``audit_fraction``) trains to the
end anyway; when one finishes, its forecast at the moment the rule first wanted to stop it is
compared with what it reached, so the rule's live error is measured in every run (``report``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluator.early_stop.forecast import CurveForecaster
from evaluator.early_stop.rule import Decision, EarlyStopRule
from agent.records import ForecastRecord
from evaluator.records import Candidate, Evaluation, Purpose, Status


@dataclass
class _Curve:
    epochs: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    train: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class Audit:
    """An audited candidate: the forecast when the rule first wanted it stopped, and its final value."""

    candidate_id: str
    epoch: float
    lower: float
    median: float
    upper: float
    incumbent: float
    final: float

    @property
    def covered(self) -> bool:
        return self.lower <= self.final <= self.upper

    @property
    def would_have_won(self) -> bool:
        """It beat the incumbent of the time: stopping it would have cost the search."""
        return self.final > self.incumbent


class EarlyStopMonitor:
    def __init__(self, run_id: str, final_epoch: int, *, threshold: float = 0.05, audit_fraction: float = 0.1,
                 min_epochs: float = 5, seed: int = 0) -> None:
        self.run_id, self.final_epoch = run_id, final_epoch
        self.rule = EarlyStopRule(CurveForecaster(), threshold=threshold, audit_fraction=audit_fraction,
                                  min_epochs=min_epochs, seed=seed)
        self.incumbent: float | None = None
        self._curves: dict[str, _Curve] = {}
        self._pending: list[ForecastRecord] = []
        self._first_audit: dict[str, ForecastRecord] = {}
        self.audits: list[Audit] = []
        self.stopped: dict[str, float] = {}  # candidate -> epoch it was stopped after
        self.forecasts = 0

    def on_epoch(self, candidate_id: str, epoch: float, val_accuracy: float,
                 train_accuracy: float | None = None) -> Decision | None:
        """Forecast after this epoch; the decision, or None at the final epoch (nothing left to forecast)."""
        curve = self._curves.setdefault(candidate_id, _Curve())
        curve.epochs.append(float(epoch))
        curve.values.append(float(val_accuracy))
        curve.train.append(train_accuracy)
        if epoch >= self.final_epoch:
            return None
        train = curve.train if all(t is not None for t in curve.train) else None
        decision = self.rule.decide(curve.epochs, curve.values, self.final_epoch, self.incumbent,
                                    candidate_id=candidate_id, train=train)
        f = decision.forecast
        action = "stop" if decision.stop else "audit" if decision.audited else "continue"
        record = ForecastRecord(
            run_id=self.run_id, candidate_id=candidate_id, epoch=f.epoch, final_epoch=f.final_epoch, method=f.method,
            reference_curves=f.references, last_value=f.last_value, mean=f.mean, lower=f.lower, median=f.median,
            upper=f.upper, incumbent=self.incumbent, p_beat=min(1.0, max(0.0, decision.p_beat)), action=action,
            reason=decision.reason)
        self._pending.append(record)
        self.forecasts += 1
        if action == "audit":
            self._first_audit.setdefault(candidate_id, record)
        if decision.stop:
            self.stopped[candidate_id] = float(epoch)
        return decision

    def stop_message(self, decision: Decision) -> str:
        """The stopped candidate's error text: what was forecast and why it stopped."""
        f = decision.forecast
        return (f"stopped early after epoch {f.epoch:g} of {f.final_epoch:g}: forecast final val accuracy {f.median:.4f} "
                f"(80% interval {f.lower:.4f}-{f.upper:.4f}, {f.method} on {f.references} finished curves); "
                f"P(beat the incumbent {self.incumbent:.4f}) = {decision.p_beat:.3g} < {self.rule.threshold:g}")

    def on_finished(self, candidate: Candidate, evaluation: Evaluation) -> None:
        """A result: a full-length ok curve becomes a reference (and maybe the incumbent); audits are scored."""
        if evaluation.purpose is not Purpose.SEARCH:
            return
        self._curves.pop(candidate.candidate_id, None)
        points = [p for p in evaluation.curve if p.val_accuracy is not None]
        complete = evaluation.status is Status.OK and points and points[-1].epoch >= self.final_epoch
        if not complete:
            return
        train = [p.train_accuracy for p in points]
        self.rule.forecaster.add_reference([p.epoch for p in points], [p.val_accuracy for p in points],
                                           train=train if all(t is not None for t in train) else None)
        final = points[-1].val_accuracy
        audit = self._first_audit.pop(candidate.candidate_id, None)
        if audit is not None and audit.incumbent is not None:
            self.audits.append(Audit(candidate_id=candidate.candidate_id, epoch=audit.epoch, lower=audit.lower,
                                     median=audit.median, upper=audit.upper, incumbent=audit.incumbent, final=final))
        if self.incumbent is None or final > self.incumbent:
            self.incumbent = final

    def drain(self) -> list[ForecastRecord]:
        """The forecasts made since the last call (for the history)."""
        out, self._pending = self._pending, []
        return out

    def report(self) -> dict[str, Any]:
        """The summary's ``early_stop`` object: what the rule did and how its audits came out."""
        n = len(self.audits)
        return {
            "mode": "forecast", "threshold": self.rule.threshold, "audit_fraction": self.rule.audit_fraction,
            "forecasts": self.forecasts, "stopped": len(self.stopped), "audits_finished": n,
            "audit_mean_abs_error": round(sum(abs(a.median - a.final) for a in self.audits) / n, 4) if n else None,
            "audit_coverage80": round(sum(a.covered for a in self.audits) / n, 4) if n else None,
            "audit_would_have_won": sum(a.would_have_won for a in self.audits),
        }
