"""The early-stop rule: stop a candidate when the forecast says it will almost surely not beat
the best finished one (the incumbent), and spend its epochs elsewhere.

``EarlyStopRule`` stops a candidate when ``P(final > incumbent)`` under the forecast
(``evaluator.early_stop.forecast.CurveForecaster``) falls below ``threshold``, once ``min_epochs``
epochs are observed and the forecast rests on at least ``min_references`` finished curves. A
seeded ``audit_fraction`` of the candidates it would stop trains to the end anyway, so the
forecaster's live error is measured, not assumed; the audit draw is a hash of ``(seed,
candidate_id)``, so it is reproducible across resumes. What it saves, and at what regret, is
measured by bench/early_stopping.py (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from evaluator.early_stop.forecast import MIN_REFERENCES, CurveForecaster, CurveLike, Forecast, check_accuracy


@dataclass(frozen=True)
class Decision:
    """One early-stop decision. ``stop``: stop the candidate now. ``audited``: the rule would have
    stopped it, but it is in the audit share and trains to the end (so its forecast can be checked).
    ``p_beat``: P(final > incumbent) under ``forecast`` (1.0 when there is no incumbent).
    ``reason``: why, in words a log can show."""

    stop: bool
    audited: bool
    forecast: Forecast
    p_beat: float
    reason: str


class EarlyStopRule:
    """Stop a candidate when P(final > incumbent) < ``threshold``.

    Parameters
        forecaster: the run's ``CurveForecaster`` (add every finished curve to it).
        threshold: stop below this probability of beating the incumbent (default 0.05, the
            value Domhan et al. 2015 used; not fitted to any data set here).
        min_epochs: no stop before this epoch has been observed.
        audit_fraction: the share of would-be-stopped candidates that train to the end anyway.
        min_references: no stop while the forecast rests on fewer finished curves than this
            (a curve-fit forecast knows nothing of the run's schedule).
        seed: picks the audited candidates: candidate c is audited when a hash of
            (seed, c) falls below ``audit_fraction``, so the draw is the same on every call
            and after a resume.

    The rule keeps no state but the forecaster's references: call ``decide`` after every epoch
    (or ``first_stop`` once with the whole curve, in a replay).
    """

    def __init__(self, forecaster: CurveForecaster | None = None, *, threshold: float = 0.05, min_epochs: float = 5,
                 audit_fraction: float = 0.1, min_references: int = MIN_REFERENCES, seed: int = 0) -> None:
        if not (0.0 < threshold < 1.0):
            raise ValueError(f"threshold={threshold!r} must be a probability strictly between 0 and 1, e.g. 0.05")
        if not (0.0 <= audit_fraction <= 1.0):
            raise ValueError(f"audit_fraction={audit_fraction!r} must be in [0, 1], e.g. 0.1 for 10 %")
        if not (min_epochs >= 0):
            raise ValueError(f"min_epochs={min_epochs!r} must be a non-negative number of epochs")
        if int(min_references) != min_references or min_references < 0:
            raise ValueError(f"min_references={min_references!r} must be a non-negative integer")
        self.forecaster = forecaster if forecaster is not None else CurveForecaster()
        self.threshold = float(threshold)
        self.min_epochs = float(min_epochs)
        self.audit_fraction = float(audit_fraction)
        self.min_references = int(min_references)
        self.seed = int(seed)

    def is_audited(self, candidate_id: str) -> bool:
        """Whether ``candidate_id`` is in the audit share (a seeded, stateless draw)."""
        digest = hashlib.sha256(f"{self.seed}:{candidate_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < self.audit_fraction

    def decide(self, curve_epochs: CurveLike, curve_values: CurveLike, final_epoch: float,
               incumbent: float | None, *, candidate_id: str, train: CurveLike | None = None) -> Decision:
        """Decide after the last observed epoch of ``curve_values`` (fractions); ``incumbent`` is the best
        final validation accuracy among finished candidates, or None when none has finished; ``train``: the
        candidate's training accuracy at the same epochs, when known (see ``CurveForecaster.forecast``)."""
        inc = None if incumbent is None else check_accuracy(incumbent, "incumbent")
        forecast = self.forecaster.forecast(curve_epochs, curve_values, final_epoch, train=train)
        p_beat = 1.0 if inc is None else forecast.prob_above(inc)
        reason = self._blocked(forecast.epoch, forecast.final_epoch, forecast.references, inc)
        if reason is None and p_beat >= self.threshold:
            reason = f"P(beat incumbent)={p_beat:.3f} >= {self.threshold:g}: keep training"
        if reason is not None:
            return Decision(stop=False, audited=False, forecast=forecast, p_beat=p_beat, reason=reason)
        return self._acting(forecast, p_beat, candidate_id)

    def first_stop(self, curve_epochs: CurveLike, curve_values: CurveLike, final_epoch: float,
                   incumbent: float | None, *, candidate_id: str,
                   train: CurveLike | None = None) -> tuple[int, Decision] | None:
        """Replay ``decide`` over every prefix of a whole curve; return ``(index, decision)`` at the first prefix
        where the rule acts (stops, or would stop but audits), or None when it never does.

        Equal to calling ``decide`` after each epoch with the same references and incumbent, but one
        vectorised forecast pass instead of one per epoch."""
        if incumbent is None:
            return None
        inc = check_accuracy(incumbent, "incumbent")
        path = self.forecaster.forecast_path(curve_epochs, curve_values, final_epoch, train=train)
        p_beat = path.prob_above(inc)
        eligible = ((path.epochs >= self.min_epochs) & (path.epochs < path.final_epoch)
                    & (path.references >= self.min_references) & (p_beat < self.threshold))
        hits = np.nonzero(eligible)[0]
        if len(hits) == 0:
            return None
        i = int(hits[0])
        return i, self._acting(path.at(i), float(p_beat[i]), candidate_id)

    def _blocked(self, epoch: float, final_epoch: float, references: int, incumbent: float | None) -> str | None:
        if incumbent is None:
            return "no finished candidate yet: nothing to beat"
        if epoch >= final_epoch:
            return "final epoch reached"
        if epoch < self.min_epochs:
            return f"epoch {epoch:g} < min_epochs {self.min_epochs:g}"
        if references < self.min_references:
            return f"the forecast rests on {references} finished curves (< min_references {self.min_references})"
        return None

    def _acting(self, forecast: Forecast, p_beat: float, candidate_id: str) -> Decision:
        audited = self.is_audited(candidate_id)
        verdict = "audited: trains to the end" if audited else "stop"
        return Decision(stop=not audited, audited=audited, forecast=forecast, p_beat=p_beat,
                        reason=f"P(beat incumbent)={p_beat:.3g} < {self.threshold:g}: {verdict}")
