"""Learning-curve forecasts and the early-stop rule (evaluator/early_stop/forecast.py), on synthetic curves of
several shapes, plus a run of bench/early_stopping.py on a small generated curves file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from evaluator.early_stop.forecast import QUANTILE_LEVELS, CurveForecaster
from evaluator.early_stop.rule import EarlyStopRule
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
#     The training curve as a covariate     #
#############################################

def train_val_population(rng: np.random.Generator, n: int,
                         informative: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """(validation, training) curves whose final is set by a hidden quality q: the validation prefix sees q
    through a large per-candidate offset that fades by the end; the training curve carries q cleanly
    (``informative``) or carries an unrelated draw."""
    population = []
    for _ in range(n):
        q = rng.uniform()
        val = (0.6 + 0.3 * q - 0.35 * np.exp(-EPOCHS / 8) + rng.normal(0, 0.1) * np.exp(-EPOCHS / 30)
               + rng.normal(0, 0.01, EPOCHS.size))
        skill = q if informative else rng.uniform()
        train = 0.65 + 0.3 * skill - 0.4 * np.exp(-EPOCHS / 8) + rng.normal(0, 0.003, EPOCHS.size)
        population.append((np.clip(val, 0, 1), np.clip(train, 0, 1)))
    return population


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.mark.parametrize("informative", [True, False])
def test_a_training_curve_that_carries_the_ranking_improves_it_and_one_that_does_not_is_ignored(informative):
    rng = np.random.default_rng(40)
    population = train_val_population(rng, 100, informative)
    forecaster = CurveForecaster()
    for val, train in population[:40]:
        forecaster.add_reference(EPOCHS, val, train=train)
    finals = [val[-1] for val, _ in population[40:]]
    without = [forecaster.forecast(EPOCHS[:10], val[:10], FINAL) for val, _ in population[40:]]
    with_train = [forecaster.forecast(EPOCHS[:10], val[:10], FINAL, train=train[:10]) for val, train in population[40:]]
    assert all(f.method == "run-calibrated" and f.references == 40 for f in with_train)
    rank_without = spearman([f.mean for f in without], finals)
    rank_with = spearman([f.mean for f in with_train], finals)
    inside = np.mean([f.lower <= y <= f.upper for f, y in zip(with_train, finals)])
    assert 0.65 <= inside <= 0.97, inside
    if informative:
        assert rank_with > 0.95 and rank_with > rank_without + 0.1, (rank_with, rank_without)
        assert np.mean([abs(f.mean - y) for f, y in zip(with_train, finals)]) < 0.5 * np.mean(
            [abs(f.mean - y) for f, y in zip(without, finals)])
    else:  # the leave-one-out weights give the val + train regression (almost) no share
        assert abs(rank_with - rank_without) < 0.02, (rank_with, rank_without)


def test_an_unrelated_training_curve_barely_moves_forecasts_from_few_references():
    """With 12 references, the leave-one-out weights keep an uninformative covariate out (mean shift 0.008;
    giving the val + train regression all the weight whenever it is defined shifts them by 0.032)."""
    shifts = {}
    for informative in (True, False):
        population = train_val_population(np.random.default_rng(40), 100, informative)
        forecaster = CurveForecaster()
        for val, train in population[:12]:
            forecaster.add_reference(EPOCHS, val, train=train)
        shifts[informative] = np.mean([abs(forecaster.forecast(EPOCHS[:10], val[:10], FINAL, train=train[:10]).mean
                                           - forecaster.forecast(EPOCHS[:10], val[:10], FINAL).mean)
                                       for val, train in population[12:]])
    assert shifts[False] < 0.015 and shifts[True] > 0.03, shifts


def assert_same_paths(a, b) -> None:
    assert a.methods == b.methods
    for name in ("references", "is_logit", "locs", "scales", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_without_enough_training_curves_the_forecast_is_the_validation_only_one():
    rng = np.random.default_rng(41)
    population = train_val_population(rng, 30)
    val, train = population[-1]
    with_train, without, mixed, mostly = CurveForecaster(), CurveForecaster(), CurveForecaster(), CurveForecaster()
    for k, (v, t) in enumerate(population[:20]):
        with_train.add_reference(EPOCHS, v, train=t)
        without.add_reference(EPOCHS, v)
        mixed.add_reference(EPOCHS, v, train=t if k < 9 else None)  # 9 of 20 have one: too many lack it
        mostly.add_reference(EPOCHS, v, train=t if k < 10 else None)  # half have one: enough
    plain = without.forecast_path(EPOCHS[:30], val[:30], FINAL)
    assert_same_paths(with_train.forecast_path(EPOCHS[:30], val[:30], FINAL), plain)  # candidate without one
    assert_same_paths(without.forecast_path(EPOCHS[:30], val[:30], FINAL, train=train[:30]), plain)
    assert_same_paths(mixed.forecast_path(EPOCHS[:30], val[:30], FINAL, train=train[:30]), plain)
    used = mostly.forecast_path(EPOCHS[:30], val[:30], FINAL, train=train[:30])
    assert used.locs.shape[0] > plain.locs.shape[0]  # the val + train components joined in
    np.testing.assert_allclose(used.weights.sum(axis=0), 1.0)
    few = CurveForecaster()  # 5 references with train curves: fewer than the regression needs
    for v, t in population[:5]:
        few.add_reference(EPOCHS, v, train=t)
    bare = CurveForecaster()
    for v, _ in population[:5]:
        bare.add_reference(EPOCHS, v)
    assert_same_paths(few.forecast_path(EPOCHS[:30], val[:30], FINAL, train=train[:30]),
                      bare.forecast_path(EPOCHS[:30], val[:30], FINAL))


PINNED_MEAN = 0.6999968792523296  # CurveForecaster before the training-curve covariate, numpy 2 (this machine)
PINNED_QUANTILES = [0.6650749757124126, 0.6987456174928313, 0.7375240550858635]


def test_validation_only_forecasts_keep_their_numbers():
    """Pinned from the implementation before the training-curve covariate existed (same seed, same inputs)."""
    rng = np.random.default_rng(11)
    population = [np.clip(late_rise(rng)(EPOCHS) + rng.normal(0, 0.005, EPOCHS.size), 0, 1) for _ in range(40)]
    forecaster = CurveForecaster()
    for y in population[:30]:
        forecaster.add_reference(EPOCHS, y)
    f = forecaster.forecast(EPOCHS[:20], population[35][:20], FINAL)
    assert f.mean == pytest.approx(PINNED_MEAN, rel=1e-9)
    assert [f.lower, f.median, f.upper] == pytest.approx(PINNED_QUANTILES, rel=1e-9)


def test_forecast_path_and_first_stop_with_a_training_curve_match_stepwise_calls():
    rng = np.random.default_rng(42)
    population = train_val_population(rng, 30)
    forecaster = CurveForecaster()
    for v, t in population[:25]:
        forecaster.add_reference(EPOCHS, v, train=t)
    val, train = min(population[25:], key=lambda c: c[0][-1])  # the poorest candidate
    path = forecaster.forecast_path(EPOCHS[:40], val[:40], FINAL, train=train[:40])
    for i in (4, 9, 39):
        one = forecaster.forecast(EPOCHS[:i + 1], val[:i + 1], FINAL, train=train[:i + 1])
        assert one.method == path.at(i).method == "run-calibrated"
        assert one.mean == pytest.approx(path.at(i).mean, abs=1e-9)
        assert one.quantiles == pytest.approx(path.at(i).quantiles, abs=1e-9)
    rule = EarlyStopRule(forecaster, threshold=0.05, min_epochs=3, audit_fraction=0.0)
    incumbent = max(v[-1] for v, _ in population[:25])
    acted = rule.first_stop(EPOCHS, val, FINAL, incumbent, candidate_id="x", train=train)
    stepwise = next(((t - 1, d) for t in range(1, 101)
                     if (d := rule.decide(EPOCHS[:t], val[:t], FINAL, incumbent, candidate_id="x",
                                          train=train[:t])).stop), None)
    assert acted is not None and stepwise is not None and acted[0] == stepwise[0]
    assert acted[1].p_beat == pytest.approx(stepwise[1].p_beat, rel=1e-9, abs=1e-12)


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


@pytest.mark.parametrize("train, message", [
    ([0.1, 0.2], r"2 training accuracies for 3 epochs.*aligned with epochs"),
    ([0.1, 0.2, 0.3, 0.4], r"4 training accuracies for 3 epochs"),
    ([10.0, 20.0, 30.0], r"training accuracies must be fractions in \[0, 1\].*percentage: divide by 100"),
    ([0.1, float("nan"), 0.3], r"training accuracies must be fractions in \[0, 1\], got nan at epoch 2"),
    ([0.1, -0.2, 0.3], r"training accuracies must be fractions in \[0, 1\]"),
    ("abc", r"train must be a sequence of numbers"),
])
def test_bad_training_curves_raise_value_errors_that_say_the_fix(train, message):
    with pytest.raises(ValueError, match=r"^train curve: " + message):
        CurveForecaster().forecast([1, 2, 3], [0.1, 0.2, 0.3], 10, train=train)
    with pytest.raises(ValueError, match=r"^reference curve: " + message):
        CurveForecaster().add_reference([1, 2, 3], [0.1, 0.2, 0.3], train=train)
    with pytest.raises(ValueError, match=message):
        EarlyStopRule().decide([1, 2, 3], [0.1, 0.2, 0.3], 10, incumbent=0.5, candidate_id="a", train=train)
    with pytest.raises(ValueError, match=message):
        EarlyStopRule().first_stop([1, 2, 3], [0.1, 0.2, 0.3], 10, incumbent=0.5, candidate_id="a", train=train)


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


@pytest.mark.parametrize("train", [True, False])
def test_bench_replays_a_small_curves_file(tmp_path, train):
    curves = write_curves_csv(tmp_path / "curves.csv")
    out = subprocess.run([sys.executable, "bench/early_stopping.py", "--curves", str(curves), "--orders", "2",
                          "--thresholds", "0.05", "0.2", "--forecast-epochs", "5", "10", "--median-min-epochs", "10",
                          "--behind", "5", "--behind-min-epochs", "5", "--no-write", "--json", str(tmp_path / "raw.json"),
                          *([] if train else ["--no-train-curve"])],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    setting = "validation + training curves" if train else "validation curves only"
    assert f"the forecast rule uses the {setting}" in out.stdout
    assert ("Spearman run-calibrated val+train" in out.stdout) == train
    last = out.stdout.strip().splitlines()[-1]
    number = r"(\d+\.\d+|nan)"
    assert re.fullmatch(rf"early-stopping: saving={number}x regret={number}pp spearman@10={number} "
                        rf"coverage80={number} baseline_saving={number}x", last), last
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert {(p["policy"], p["setting"]) for p in raw["policies"]} >= {("forecast", "P(beat) < 0.05"),
                                                                      ("median", "from epoch 10")}
    assert [q["epoch"] for q in raw["quality"]] == [5, 10]
    assert all(np.isfinite(q["spearman_calibrated"]) for q in raw["quality"])
    assert all(np.isfinite(q["spearman_train"]) == train and np.isfinite(q["coverage_train"]) == train
               for q in raw["quality"])
    spearman10 = float(re.search(r"spearman@10=(\S+)", last).group(1))
    expected = raw["quality"][1]["spearman_train" if train else "spearman_calibrated"]
    assert spearman10 == pytest.approx(expected, abs=1e-3)


def test_bench_reports_a_malformed_train_column(tmp_path):
    curves = write_curves_csv(tmp_path / "curves.csv")
    lines = curves.read_text().splitlines()
    lines[3] = lines[3].replace('"[', '"[12.5, ', 1)  # one training accuracy too many in row 4
    curves.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "bench/early_stopping.py", "--curves", str(curves), "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "row 4" in out.stderr and "train_accs" in out.stderr and "same epochs" in out.stderr


def test_bench_reports_a_missing_curves_file(tmp_path):
    missing = tmp_path / "nowhere.csv"
    out = subprocess.run([sys.executable, "bench/early_stopping.py", "--curves", str(missing), "--no-write"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "--curves" in out.stderr
