"""Learning-curve forecasts and the early-stop rule (evaluator/forecast.py), on synthetic curves of
several shapes, plus a run of bench/early_stopping.py on a small generated curves file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evaluator.forecast import QUANTILE_LEVELS, CurveForecaster, EarlyStopRule
from tests.conftest import ROOT

EPOCHS = np.arange(1, 101, dtype=float)  # a 100-epoch schedule
FINAL = 100.0


def noisy(shape: Callable[[np.ndarray], np.ndarray], noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(shape(EPOCHS) + rng.normal(0.0, noise, EPOCHS.size), 0.0, 1.0)


def random_family(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A random saturating-exponential, power-law or sigmoid (log-power) learning curve."""
    kind = rng.integers(3)
    if kind == 0:
        a, b, c = rng.uniform(0.6, 0.95), rng.uniform(0.3, 0.6), rng.uniform(5, 30)
        return lambda x: a - b * np.exp(-x / c)
    if kind == 1:
        a, b, alpha = rng.uniform(0.7, 0.95), rng.uniform(0.4, 0.7), rng.uniform(0.3, 1.0)
        return lambda x: a - b * x ** -alpha
    a, b, k, d = rng.uniform(0.6, 0.95), rng.uniform(0.1, 0.3), rng.uniform(5, 30), rng.uniform(1, 3)
    return lambda x: b + (a - b) / (1 + (x / k) ** -d)


def late_rise(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A curve whose schedule lifts it near the end (as a cosine learning-rate decay does)."""
    a, b, c, lift = rng.uniform(0.55, 0.8), rng.uniform(0.3, 0.45), rng.uniform(4, 12), rng.uniform(0.06, 0.12)
    return lambda x: a - b * np.exp(-x / c) + lift * (x / FINAL) ** 6


#############################################
#          Forecasts of single curves       #
#############################################

def test_saturating_exponential_is_forecast_near_its_asymptote():
    y = noisy(lambda x: 0.9 - 0.6 * np.exp(-x / 8), 0.005, seed=0)
    f = CurveForecaster().forecast(EPOCHS[:30], y[:30], FINAL)
    assert f.method == "curve-fit" and f.references == 0
    assert abs(f.mean - 0.9) < 0.03
    assert f.lower <= 0.9 <= f.upper


def test_power_law_is_forecast_beyond_the_last_value():
    truth = lambda x: 0.95 - 0.7 * x ** -0.5  # noqa: E731
    y = noisy(truth, 0.005, seed=1)
    f = CurveForecaster().forecast(EPOCHS[:30], y[:30], FINAL)
    assert abs(f.mean - truth(FINAL)) < 0.03
    assert f.mean > y[29] + 0.03  # it extrapolates the remaining gain, not the last value
    assert f.lower <= truth(FINAL) <= f.upper


def test_a_curve_still_rising_is_forecast_to_keep_rising():
    truth = lambda x: 0.2 + 0.12 * np.log(x)  # noqa: E731
    y = noisy(truth, 0.005, seed=2)
    f = CurveForecaster().forecast(EPOCHS[:30], y[:30], FINAL)
    assert f.mean > y[29] + 0.1
    assert abs(f.mean - truth(FINAL)) < 0.03
    assert f.lower <= truth(FINAL) <= f.upper


def test_a_flat_noisy_curve_is_forecast_flat_with_a_modest_interval():
    y = noisy(lambda x: 0.5 + 0 * x, 0.02, seed=3)
    f = CurveForecaster().forecast(EPOCHS[:30], y[:30], FINAL)
    assert abs(f.mean - 0.5) < 0.03
    assert f.lower <= 0.5 <= f.upper
    assert f.upper - f.lower < 0.2
    assert f.prob_above(0.7) < 0.05


def test_a_collapsing_curve_is_not_forecast_to_recover():
    peak = 0.6
    y = noisy(lambda x: np.clip(np.where(x < 10, 0.1 + 0.05 * x, peak - 0.02 * (x - 10)), 0.1, 1.0), 0.01, seed=4)
    for t in (20, 30, 40):
        f = CurveForecaster().forecast(EPOCHS[:t], y[:t], FINAL)
        values = [f.mean, *f.quantiles.values()]
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
        assert f.median < peak and f.mean < peak
        assert f.lower <= y[t - 1] + 0.02  # the interval reaches down to where the curve has fallen


def test_a_curve_observed_to_its_final_epoch_forecasts_its_last_value():
    y = noisy(lambda x: 0.8 - 0.5 * np.exp(-x / 10), 0.01, seed=5)
    f = CurveForecaster().forecast(EPOCHS, y, FINAL)
    assert f.method == "observed"
    assert f.mean == pytest.approx(y[-1], abs=1e-6) and f.lower == pytest.approx(y[-1], abs=1e-5)
    assert f.prob_above(y[-1] - 0.001) == pytest.approx(1.0) and f.prob_above(y[-1] + 0.001) == pytest.approx(0.0)


def test_two_observations_give_an_uninformative_forecast():
    f = CurveForecaster().forecast([1, 2], [0.3, 0.35], FINAL)
    assert f.method == "too-short"
    assert f.upper - f.lower > 0.5


#############################################
#     Quantiles, coverage and P(beat)       #
#############################################

def test_quantiles_are_ordered_and_cover_finals_of_random_families():
    rng = np.random.default_rng(10)
    forecaster = CurveForecaster()
    for t in (15, 40):
        inside = []
        for _ in range(80):
            y = np.clip(random_family(rng)(EPOCHS) + rng.normal(0, 0.01, EPOCHS.size), 0, 1)
            f = forecaster.forecast(EPOCHS[:t], y[:t], FINAL)
            qs = [f.quantiles[q] for q in QUANTILE_LEVELS]
            assert qs == sorted(qs) and 0.0 <= qs[0] and qs[-1] <= 1.0
            assert f.quantile(0.05) <= f.lower and f.upper <= f.quantile(0.95)
            inside.append(f.lower <= y[-1] <= f.upper)
        assert 0.65 <= np.mean(inside) <= 0.97, (t, np.mean(inside))


def test_run_calibrated_forecast_learns_a_late_rise_from_finished_curves():
    """Curve fits cannot see a schedule's late lift; finished curves of the same run teach it."""
    rng = np.random.default_rng(11)
    population = [np.clip(late_rise(rng)(EPOCHS) + rng.normal(0, 0.005, EPOCHS.size), 0, 1) for _ in range(110)]
    calibrated, bare = CurveForecaster(), CurveForecaster()
    for y in population[:30]:
        calibrated.add_reference(EPOCHS, y)
    errors = {"calibrated": [], "bare": []}
    inside = []
    for y in population[30:]:
        f = calibrated.forecast(EPOCHS[:20], y[:20], FINAL)
        assert f.method == "run-calibrated" and f.references == 30
        errors["calibrated"].append(abs(f.mean - y[-1]))
        errors["bare"].append(abs(bare.forecast(EPOCHS[:20], y[:20], FINAL).mean - y[-1]))
        inside.append(f.lower <= y[-1] <= f.upper)
    assert np.mean(errors["calibrated"]) < 0.5 * np.mean(errors["bare"]), errors
    assert 0.65 <= np.mean(inside) <= 0.97, np.mean(inside)


@pytest.mark.parametrize("references", [0, 12])
def test_prob_beat_falls_as_the_incumbent_rises(references):
    rng = np.random.default_rng(12)
    forecaster = CurveForecaster()
    for _ in range(references):
        forecaster.add_reference(EPOCHS, np.clip(random_family(rng)(EPOCHS) + rng.normal(0, 0.01, 100), 0, 1))
    y = noisy(lambda x: 0.85 - 0.5 * x ** -0.6, 0.01, seed=13)
    f = forecaster.forecast(EPOCHS[:20], y[:20], FINAL)
    probs = [f.prob_above(v) for v in np.linspace(0.0, 1.0, 201)]
    assert all(a >= b - 1e-12 for a, b in zip(probs, probs[1:]))
    assert probs[0] == pytest.approx(1.0) and probs[-1] == 0.0
    assert f.prob_above(f.median) == pytest.approx(0.5, abs=0.02)


def test_forecast_path_matches_forecasts_of_each_prefix():
    rng = np.random.default_rng(14)
    forecaster = CurveForecaster()
    y = noisy(lambda x: 0.8 - 0.5 * np.exp(-x / 12), 0.01, seed=15)
    for references in (0, 5):
        while forecaster.references < references:
            forecaster.add_reference(EPOCHS, np.clip(random_family(rng)(EPOCHS) + rng.normal(0, 0.01, 100), 0, 1))
        path = forecaster.forecast_path(EPOCHS[:40], y[:40], FINAL)
        for i in (1, 4, 19, 39):
            one, many = forecaster.forecast(EPOCHS[:i + 1], y[:i + 1], FINAL), path.at(i)
            assert one.method == many.method and one.mean == pytest.approx(many.mean, abs=1e-9)
            assert one.quantiles == pytest.approx(many.quantiles, abs=1e-9)
        assert path.prob_above(0.75)[19] == pytest.approx(path.at(19).prob_above(0.75), abs=1e-12)


def test_forecast_with_many_references_is_serialisable():
    """(Its speed, about 3 ms a forecast, is measured by bench/early_stopping.py, not asserted here.)"""
    rng = np.random.default_rng(16)
    epochs = np.arange(1, 201, dtype=float)
    forecaster = CurveForecaster()
    for _ in range(100):
        forecaster.add_reference(epochs, np.clip(random_family(rng)(epochs) + rng.normal(0, 0.01, 200), 0, 1))
    y = np.clip(random_family(rng)(epochs) + rng.normal(0, 0.01, 200), 0, 1)
    f = forecaster.forecast(epochs[:50], y[:50], 200)
    record = json.loads(json.dumps(f.to_dict()))
    assert record["method"] == "run-calibrated" and record["references"] == 100 and 0 <= record["mean"] <= 1


#############################################
#              Early-stop rule              #
#############################################

def hopeless_rule(**kwargs) -> tuple[EarlyStopRule, np.ndarray]:
    """A rule with references, and a candidate far below them."""
    rng = np.random.default_rng(20)
    forecaster = CurveForecaster()
    for _ in range(8):
        top = rng.uniform(0.8, 0.9)
        forecaster.add_reference(EPOCHS, np.clip(top - 0.4 * EPOCHS ** -0.5 + rng.normal(0, 0.01, 100), 0, 1))
    poor = noisy(lambda x: 0.3 + 0 * x, 0.01, seed=21)
    return EarlyStopRule(forecaster, **kwargs), poor


def test_audit_fraction_is_honoured_and_seeded():
    ids = [f"cand-{k}" for k in range(5000)]
    rule = EarlyStopRule(audit_fraction=0.1, seed=7)
    audited = {c for c in ids if rule.is_audited(c)}
    assert 0.08 <= len(audited) / len(ids) <= 0.12
    assert audited == {c for c in ids if EarlyStopRule(audit_fraction=0.1, seed=7).is_audited(c)}
    other = {c for c in ids if EarlyStopRule(audit_fraction=0.1, seed=8).is_audited(c)}
    assert other != audited and len(other & audited) < 0.3 * len(audited)
    assert not any(EarlyStopRule(audit_fraction=0.0).is_audited(c) for c in ids[:500])
    assert all(EarlyStopRule(audit_fraction=1.0).is_audited(c) for c in ids[:500])


def test_decide_stops_a_hopeless_candidate_unless_it_is_audited():
    rule, poor = hopeless_rule(threshold=0.05, min_epochs=5, audit_fraction=0.5, seed=3)
    decisions = {c: rule.decide(EPOCHS[:10], poor[:10], FINAL, incumbent=0.85, candidate_id=c)
                 for c in (f"c{k}" for k in range(12))}
    for c, d in decisions.items():
        assert d.p_beat < 0.05 and d.forecast.method == "run-calibrated" and d.forecast.epoch == 10
        assert d.audited == rule.is_audited(c) and d.stop == (not d.audited)
    assert any(d.audited for d in decisions.values()) and any(d.stop for d in decisions.values())


def test_decide_never_stops_without_an_incumbent_early_or_without_references():
    rule, poor = hopeless_rule(threshold=0.05, min_epochs=5, audit_fraction=0.0)
    no_incumbent = rule.decide(EPOCHS[:10], poor[:10], FINAL, incumbent=None, candidate_id="a")
    assert not no_incumbent.stop and no_incumbent.p_beat == 1.0 and "no finished candidate" in no_incumbent.reason
    early = rule.decide(EPOCHS[:4], poor[:4], FINAL, incumbent=0.85, candidate_id="a")
    assert not early.stop and "min_epochs" in early.reason
    at_end = rule.decide(EPOCHS, poor, FINAL, incumbent=0.85, candidate_id="a")
    assert not at_end.stop and "final epoch" in at_end.reason
    bare = EarlyStopRule(CurveForecaster(), threshold=0.05, audit_fraction=0.0)
    unsure = bare.decide(EPOCHS[:10], poor[:10], FINAL, incumbent=0.85, candidate_id="a")
    assert not unsure.stop and "min_references" in unsure.reason and unsure.forecast.method == "curve-fit"
    promising = rule.decide(EPOCHS[:10], poor[:10], FINAL, incumbent=0.2, candidate_id="a")
    assert not promising.stop and promising.p_beat > 0.05


def test_first_stop_equals_deciding_after_every_epoch():
    rule, poor = hopeless_rule(threshold=0.05, min_epochs=3, audit_fraction=0.0)
    fading = noisy(lambda x: 0.6 + 0.2 * np.exp(-x / 15) - 0.2, 0.01, seed=22)  # falls behind slowly
    for curve, incumbent in ((poor, 0.85), (fading, 0.7), (poor, 0.25)):
        acted = rule.first_stop(EPOCHS, curve, FINAL, incumbent, candidate_id="x")
        stepwise = next(((t - 1, d) for t in range(1, 101)
                         if (d := rule.decide(EPOCHS[:t], curve[:t], FINAL, incumbent, candidate_id="x")).stop), None)
        if stepwise is None:
            assert acted is None
        else:
            assert acted is not None and acted[0] == stepwise[0]
            assert acted[1].p_beat == pytest.approx(stepwise[1].p_beat, rel=1e-9, abs=1e-12)


#############################################
#                 Bad input                 #
#############################################

@pytest.mark.parametrize("epochs, values, final, message", [
    ([], [], 10, r"curve is empty.*at least one observed epoch"),
    ([1, 3, 2], [0.1, 0.2, 0.3], 10, r"strictly increasing.*sort the curve"),
    ([1, 2, 2], [0.1, 0.2, 0.3], 10, r"strictly increasing.*drop repeated epochs"),
    ([1, 2, 3], [10.0, 20.0, 30.0], 10, r"fractions in \[0, 1\].*percentage: divide by 100"),
    ([1, 2, 3], [0.1, -0.2, 0.3], 10, r"fractions in \[0, 1\]"),
    ([1, 2, 3], [0.1, float("nan"), 0.3], 10, r"fractions in \[0, 1\]"),
    ([1, 2, 3], [0.1, 0.2], 10, r"3 epochs but 2 values"),
    ([0, 1, 2], [0.1, 0.2, 0.3], 10, r"positive.*number epochs from 1"),
    ([1, 2, 3], [0.1, 0.2, 0.3], 2, r"final_epoch=2 is before the last observed epoch 3.*full schedule"),
])
def test_bad_curves_raise_value_errors_that_say_the_fix(epochs, values, final, message):
    with pytest.raises(ValueError, match=message):
        CurveForecaster().forecast(epochs, values, final)


def test_bad_rule_inputs_raise_value_errors():
    with pytest.raises(ValueError, match=r"threshold=1.5 must be a probability"):
        EarlyStopRule(threshold=1.5)
    with pytest.raises(ValueError, match=r"audit_fraction=-0.1 must be in \[0, 1\]"):
        EarlyStopRule(audit_fraction=-0.1)
    with pytest.raises(ValueError, match=r"incumbent must be an accuracy in \[0, 1\].*divide by 100"):
        EarlyStopRule().decide([1, 2, 3], [0.1, 0.2, 0.3], 10, incumbent=93.5, candidate_id="a")
    with pytest.raises(ValueError, match=r"reference curve: 2 observations"):
        CurveForecaster().add_reference([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"reference curve: accuracies must be fractions"):
        CurveForecaster().add_reference([1, 2, 3], [10, 20, 30])


#############################################
#           The benchmark script            #
#############################################

def write_curves_csv(path: Path, n: int = 14, epochs: int = 30, seed: int = 30) -> Path:
    """A small file in the NAS-Bench-201 curves format: val_accs as JSON lists of percentages."""
    rng = np.random.default_rng(seed)
    x = np.arange(1, epochs + 1, dtype=float)
    lines = ["arch_i,arch_str,train_accs,val_accs"]
    for i in range(n):
        a, b, c = rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.4), rng.uniform(2, 8)
        val = np.clip(a - b * np.exp(-x / c) + rng.normal(0, 0.01, epochs), 0, 1) * 100
        train = np.clip(val + 5, 0, 100)
        lines.append(f'{i},|cell{i}|,"{json.dumps(train.round(3).tolist())}","{json.dumps(val.round(3).tolist())}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bench_replays_a_small_curves_file(tmp_path):
    curves = write_curves_csv(tmp_path / "curves.csv")
    out = subprocess.run([sys.executable, "bench/early_stopping.py", "--curves", str(curves), "--orders", "2",
                          "--thresholds", "0.05", "0.2", "--forecast-epochs", "5", "10", "--median-min-epochs", "10",
                          "--behind", "5", "--behind-min-epochs", "5", "--no-write", "--json", str(tmp_path / "raw.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    number = r"(\d+\.\d+|nan)"
    assert re.fullmatch(rf"early-stopping: saving={number}x regret={number}pp spearman@10={number} "
                        rf"coverage80={number} baseline_saving={number}x", last), last
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert {(p["policy"], p["setting"]) for p in raw["policies"]} >= {("forecast", "P(beat) < 0.05"),
                                                                      ("median", "from epoch 10")}
    assert [q["epoch"] for q in raw["quality"]] == [5, 10]


def test_bench_reports_a_missing_curves_file(tmp_path):
    missing = tmp_path / "nowhere.csv"
    out = subprocess.run([sys.executable, "bench/early_stopping.py", "--curves", str(missing), "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "--curves" in out.stderr
