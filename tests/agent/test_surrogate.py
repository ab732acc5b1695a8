"""The surrogate-guided portfolio: encodings, the Gaussian-process surrogate, acquisition, the
pool, priors from earlier runs, the checks of --prior / --proxy-evidence, and what `agent show`
says of a pick. Searches run on real NAS-Bench-201 tables where a test measures search quality,
on the synthetic tiny tables elsewhere, and record into a real DuckDB history where the test
reads the history back."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from agent.commands.show import selection_text
from agent.config import Settings, load_settings
from agent.engine.guidance import evidence_proxy
from agent.engine.runner import run_search
from agent.proposers import Portfolio
from agent.proposers.pool import CandidatePool
from agent.store import History
from agent.store.recorder import MemoryRecorder
from agent.surrogate.acquisition import expected_improvement, hypervolume, pick_batch
from agent.surrogate.model import FeatureMatrix, GaussianSurrogate, normal_scores
from agent.surrogate.selector import PoolMember, Selector, prior_weight
from evaluator.errors import ConfigError, UserInputError
from evaluator.measure.proxies import spearman
from evaluator.objectives import Objectives
from evaluator.spaces import get_space
from evaluator.spaces.nb201 import arch_string, parse_arch
from tests.conftest import run_cli

NB201 = get_space("nb201")
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


# -- encodings --------------------------------------------------------------------------------

def test_nb201_encoding_names_edges_counts_and_paths():
    e = NB201.encode(parse_arch(BEST))
    assert e["edge_1_0=nor_conv_3x3"] == 1.0 and e["edge_3_0=skip_connect"] == 1.0
    assert e["count:nor_conv_3x3"] == 4.0 and e["count:none"] == 0.0
    # 4 paths from input to output: 3->0 direct, via 1, via 2, via 1 and 2
    assert sum(v for k, v in e.items() if k.startswith("path:")) == 4.0
    assert e["path:nor_conv_3x3>nor_conv_3x3>nor_conv_3x3"] == 1.0 and e["path:skip_connect"] == 1.0
    assert len(NB201.neighbours(parse_arch(BEST))) == 24


def test_layers_code_and_declared_encodings_are_numeric_and_never_run_code(tmp_path):
    layers = get_space("layers", input_shape=(1, 8, 8), num_classes=10)
    spec = layers.sample(random.Random(0))
    e = layers.encode(spec)
    assert e["log10_params"] > 2 and "stages.len" in e and all(isinstance(v, float) for v in e.values())
    assert any(k.startswith("stages.*.block=") for k in e)  # counts of block kinds over stages
    code = get_space("code", input_shape=(1, 8, 8), num_classes=10)
    marker = tmp_path / "ran"
    source = code.sample(random.Random(0))["source"] + f"\n\ndef _touch():\n    open({str(marker)!r}, 'w').write('x')\n"
    features = code.encode(code.validate({"source": source}))
    assert not marker.exists()  # parsed, not executed
    assert features["call:open"] == 1.0 and "training.lr" in features
    assert all(np.isfinite(v) for v in features.values())


# -- the model and the acquisition -------------------------------------------------------------

def test_normal_scores_keep_order_and_share_ties():
    s = normal_scores(np.array([0.1, 0.5, 0.5, 0.9]))
    assert s[0] < s[1] == s[2] < s[3] and abs(s.sum()) < 1e-9


def test_the_surrogate_ranks_held_out_cells_and_its_intervals_cover(nb201_dir):
    import csv

    with (nb201_dir / "nb201_12epoch_accuracy.csv").open() as f:
        rows = [(r["arch"], float(r["cifar10-val"])) for r in csv.DictReader(f)]
    rng = random.Random(0)
    rng.shuffle(rows)
    train, test = rows[:60], rows[60:560]
    table = FeatureMatrix([NB201.encode(parse_arch(a)) for a, _ in train + test])
    model = GaussianSurrogate(seed=0).fit(table.matrix[:60], np.array([v for _, v in train]))
    pred = model.predict(table.matrix[60:])
    from scipy.stats import spearmanr

    truth = np.array([v for _, v in test])
    assert spearmanr(pred.mean, truth)[0] > 0.4
    low, high = model.to_values(pred.mean - 1.2816 * pred.sd), model.to_values(pred.mean + 1.2816 * pred.sd)
    assert 0.6 < np.mean((truth >= low) & (truth <= high)) <= 1.0


def test_expected_improvement_and_hypervolume():
    ei = expected_improvement(np.array([0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.1]), best=1.0)
    assert ei[1] > ei[2] > 0 and ei[0] < ei[1]
    front = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(front, np.array([0.0, 0.0])) == pytest.approx(6.0)
    three = np.array([[1.0, 1.0, 1.0]])
    assert hypervolume(three, np.zeros(3)) == pytest.approx(1.0, rel=0.05)


def test_batch_picks_stay_apart():
    features = np.array([[0.0, 0.0], [0.0, 0.01], [5.0, 5.0]])
    assert pick_batch(np.array([1.0, 0.99, 0.5]), features, 2) == [0, 2]


def test_with_no_evaluation_the_evidence_decides_and_failures_rank_last():
    members = [PoolMember(key=str(i), spec={}, features={"x": float(i % 3)}, operator="random",
                          evidence={"synflow": float(i)}) for i in range(20)]
    sel = Selector(seed=0)
    [first] = sel.choose(members, 1)
    assert first.index == 19 and first.why["evidence_sources"] == ["synflow"]
    sel.observe("a", {"x": 0.0}, {"val_accuracy": None}, None)  # failed
    sel.observe("b", {"x": 1.0}, {"val_accuracy": 0.5}, None)
    sel.observe("c", {"x": 2.0}, {"val_accuracy": 0.6}, None)
    picks = sel.choose([m for m in members if m.features["x"] != 0.0] + [members[0]], 1)
    assert picks[0].why["evaluations"] == 3



def _sized(i: int, flops: float) -> PoolMember:
    """A pool member of this many FLOPs, with other features that say nothing of its seconds."""
    other = {f"x{j}": float(v) for j, v in enumerate(np.random.default_rng(i).uniform(size=6))}
    return PoolMember(key=f"m{i}", spec={}, features=other | {"log10_flops": float(np.log10(flops))},
                      operator="random", known={"flops": flops})


def test_the_cost_term_counts_a_start_up_before_anything_is_timed():
    """Before three timings FLOPs stand in for seconds, plus a start-up as large as the median
    member's compute: a tiny network is not taken for free (on 8x8 digits the smallest tenth of
    random layers networks reached a mean validation accuracy of 0.6), a huge one still costs."""
    flops = [1e4, 2e4, 5e4, 1e5, 2e5, 3e5, 5e5, 1e6, 3e7]
    pool = [_sized(i, f) for i, f in enumerate(flops)]
    sel = Selector(seed=0)
    seconds = sel._seconds([], pool, np.zeros((0, 2)), np.zeros((len(pool), 2)))
    assert seconds[-1] / np.median(seconds) > 10  # the 3e7-FLOP network: more than 10x the median's cost
    assert np.median(seconds) / seconds[0] < 2.1  # the 1e4-FLOP one: about half the median's, not 1/20
    [first] = sel.choose(pool, 1)  # nothing known of accuracy: not the biggest, but not simply the smallest
    assert first.index != len(pool) - 1 and first.why["predicted_seconds"] >= 1.0


def test_the_cost_model_learns_seconds_with_flops_as_its_evidence():
    rng = np.random.default_rng(0)
    flops = 10 ** rng.uniform(4, 7, 60)
    seconds = 3.0 + flops / 2e5 * rng.uniform(0.8, 1.25, 60)  # a start-up plus compute, with noise
    sel = Selector(seed=0)
    members = [_sized(i, f) for i, f in enumerate(flops)]
    for m, s in zip(members[:6], seconds[:6]):
        sel.observe(m.key, m.features, {"val_accuracy": 0.5}, float(s))
    sel.choose(members[6:], 1)
    predicted = sel._last.seconds
    assert spearman(predicted, seconds[6:]) > 0.9
# -- the guided portfolio ---------------------------------------------------------------------------

def test_the_pool_is_valid_unique_and_holds_the_best_cells_neighbourhoods():
    pool = CandidatePool(NB201, random.Random(0), size=256)
    best = parse_arch(BEST)
    seen = {arch_string(best)}
    added = pool.refill(seen, [("c0", best)])
    keys = [m.key for m in added]
    assert len(keys) == len(set(keys)) and not set(keys) & seen
    assert {arch_string(n) for n in NB201.neighbours(best)} <= set(pool.members)
    assert {m.operator for m in added} <= {"mutation", "random"}



def test_a_local_optimum_whose_neighbours_are_all_measured_gives_its_place_to_the_next_best():
    pool = CandidatePool(NB201, random.Random(0), size=256)
    ranked = [parse_arch(BEST)] + [NB201.sample(random.Random(i)) for i in range(3)]
    seen = {arch_string(c) for c in ranked} | {arch_string(n) for n in NB201.neighbours(ranked[0])}
    pool.refill(seen, [])  # full of random samples, as after the first step
    pool.refill(seen, [(f"c{i}", c) for i, c in enumerate(ranked)])
    for parent in ranked[1:]:  # the three next best lend their neighbourhoods
        assert {arch_string(n) for n in NB201.neighbours(parent)} - seen <= set(pool.members)


def test_with_evidence_the_first_picks_explore_before_mutating(tiny_tables):
    """The first ``warmup`` evaluations come from the pool's random samples (the best by the
    evidence, spread), not from mutations of the first result: measured on NAS-Bench-201 with
    synflow evidence (bench/search_nb201.py, 20 seeds), a search that mutated its first pick at
    once climbed from wherever synflow's favourite sent it (CIFAR-100: 2 of 20 stuck at validation
    60.72)."""
    class FavourMutations:  # evidence that would pick a mutation of the first result at once
        def __call__(self, members):
            for m in members:
                m.evidence["synflow"] = 10.0 if m.operator == "mutation" else float(len(m.key) % 7)

    portfolio = Portfolio(NB201, 0, selector=Selector(seed=0, cost=False), pool_size=64, evidence=[FavourMutations()])
    settings = Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, budget=6, seed=0)
    recorder = MemoryRecorder()
    summary = run_search(settings, recorder=recorder, proposer=portfolio)
    order = [c.proposer for c in recorder.candidates.values() if c.run_id == summary.run_id]
    assert order[:portfolio.warmup] == ["portfolio:random"] * portfolio.warmup
    assert "portfolio:mutation" in order[portfolio.warmup:]  # then the evidence has its way

def test_the_default_search_is_the_guided_portfolio_and_records_why_each_candidate_was_picked(tiny_tables, tmp_path):
    summary = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=tmp_path, budget=30, seed=3))
    assert summary.proposer == "portfolio" and summary.evaluations == 30 and summary.duplicates_skipped == 0
    assert summary.surrogate["pool"] >= 200 and summary.surrogate["fit_seconds"] > 0
    assert summary.best.arch.count("conv") >= 5  # the tiny tables reward convolutions
    rows = History(tmp_path).run_candidates(summary.run_id)
    assert len({r["canonical_key"] for r in rows}) == 30
    assert all(r["selection"]["pool"] > 0 and r["selection"]["rule"] for r in rows)
    assert sum(r["selection"]["evaluations"] > 0 and r["selection"]["predicted_val_accuracy"] is not None
               for r in rows) >= 25
    shown = run_cli("show", rows[-1]["candidate_id"], home=tmp_path)
    assert shown.returncode == 0 and "why it was evaluated:" in shown.stdout and "predicted val" in shown.stdout


def test_the_surrogate_beats_evolution_on_nb201_at_30_evaluations(nb201_dir):
    """Mean 200-epoch test accuracy over 4 seeds (bench/search_nb201.py measures 20)."""
    def mean(**kw):
        return np.mean([run_search(Settings(task="nb201-cifar10", benchmark_dir=nb201_dir, budget=30, seed=s, **kw),
                                   recorder=MemoryRecorder()).best.test_accuracy for s in range(4)])

    assert mean() > mean(proposer="evolution")


# -- priors ---------------------------------------------------------------------------------------

def test_a_prior_run_warm_starts_the_surrogate_and_is_named_in_the_summary(tiny_tables, tmp_path):
    prior = run_search(Settings(task="nb201-cifar100", benchmark_dir=tiny_tables, home=tmp_path, budget=20, seed=1))
    summary = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=tmp_path, budget=5, seed=2,
                                  priors=[prior.run_id]))
    assert summary.surrogate["priors"] == [{"run_id": prior.run_id, "task": "nb201-cifar100", "candidates": 20}]
    first = History(tmp_path).run_candidates(summary.run_id)[0]
    assert first["selection"]["prior_weight"] == 1.0  # nothing measured yet: the prior decides alone
    assert "evidence_sources" not in first["selection"]
    proposers = [c["proposer"] for c in History(tmp_path).run_candidates(summary.run_id)]
    assert "portfolio:prior" in proposers  # the prior run's best candidates joined the pool and competed
    assert "prior runs' share of the prediction 100%" in selection_text(first["selection"], first)
    assert first["spec"] and parse_arch(arch_string(first["spec"]))  # a cell the prior rates: conv-heavy
    assert arch_string(first["spec"]).count("conv") >= 5
    auto = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=tmp_path, budget=3, seed=4,
                               priors=["auto"]))
    assert [p["run_id"] for p in auto.surrogate["priors"]] == [prior.run_id, summary.run_id]


def test_a_prior_weighs_by_how_well_it_ranks_the_runs_own_evaluations():
    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    right, wrong, noisy = y + 0.01 * rng.normal(size=30), -y, y + 2.0 * rng.normal(size=30)
    assert prior_weight(right, noisy, y) > 0.95  # the prior orders the run's results better
    assert prior_weight(wrong, noisy, y) < 0.05  # the prior reverses them: it fades
    assert prior_weight(wrong, None, y) == 1.0  # no own predictions yet: the prior alone
    assert 0.2 < prior_weight(noisy, noisy + 1e-9, y) < 0.8  # as good as each other: shared


def test_feature_matrix_transform_puts_new_rows_on_the_fitted_scale():
    table = FeatureMatrix([{"a": 0.0, "b": 2.0, "c": 1.0}, {"a": 4.0, "b": 4.0, "c": 1.0}])
    assert table.names == ["a", "b"]  # c is constant: dropped
    np.testing.assert_allclose(table.transform([{"a": 2.0, "b": 6.0, "d": 9.0}]), [[0.5, 2.0]])


def test_a_prior_that_misranks_the_run_loses_its_weight_to_the_runs_own_surrogate():
    """A prior run whose ranking is the reverse of this task's: once the run has measured enough,
    the ensemble follows its own surrogate."""
    cells = [NB201.sample(random.Random(i)) for i in range(60)]
    rows = [NB201.encode(c) for c in cells]
    truth = np.array([r.get("count:nor_conv_3x3", 0.0) + 0.5 * r.get("count:nor_conv_1x1", 0.0) for r in rows])

    class Reversed:
        runs = ["reversed"]

        def scores(self, features):
            return np.array([-(f.get("count:nor_conv_3x3", 0.0) + 0.5 * f.get("count:nor_conv_1x1", 0.0))
                             for f in features])

    selector = Selector(seed=0, cost=False, priors=Reversed())
    pool = [PoolMember(key=str(i), spec=c, features=r, operator="random") for i, (c, r) in enumerate(zip(cells, rows))]
    first = selector.choose(pool, 1)[0]
    assert first.why["prior_weight"] == 1.0 and truth[first.index] == truth.min()  # trusted while nothing is known
    for i in range(30, 60):
        selector.observe(str(i), rows[i], {"val_accuracy": float(truth[i])}, None)
    later = selector.choose(pool[:30], 1)[0]
    assert later.why["prior_weight"] < 0.1
    assert truth[later.index] >= np.quantile(truth[:30], 0.75)


def test_bad_priors_are_refused_before_anything_is_recorded(tiny_tables, tmp_path):
    home = tmp_path / "home"
    ok = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=home, budget=3, seed=0))
    digits_run = "20261207-000000-aaaaaa"
    h = History(home)
    from agent.records import Run

    h.create_run(Run(run_id=digits_run, task="digits", space="layers", proposer="evolution", seed=0, budget=3, config={}))
    empty = "20261207-000000-bbbbbb"
    h.create_run(Run(run_id=empty, task="nb201-cifar10", space="nb201", proposer="evolution", seed=0, budget=3, config={}))
    before = len(h.list_runs())
    cases = [(["nope"], "no run 'nope'"), ([digits_run], "searched the layers space"),
             ([empty], "no candidate that finished ok"), (["auto", ok.run_id], "cannot be combined")]
    for priors, message in cases:
        with pytest.raises(UserInputError, match=message) as info:
            run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=home, budget=3, priors=priors))
        assert info.value.hint and "--prior" in str(info.value) or "prior" in info.value.hint
    with pytest.raises(UserInputError, match="--surrogate off"):
        run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=home, budget=3, priors=[ok.run_id],
                            surrogate="off"))
    with pytest.raises(UserInputError, match="--proposer evolution"):
        run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=home, budget=3, proposer="evolution",
                            proxy_evidence="synflow"))
    assert len(History(home).list_runs()) == before
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--prior", "nope",
                  home=home)
    assert out.returncode == 2 and "no run 'nope'" in out.stderr and "agent history" in out.stderr


@pytest.mark.proxy_evidence
def test_by_default_a_nb201_search_scores_its_pool_with_synflow_and_reports_the_seconds(tiny_tables, tmp_path):
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--budget", "3",
                  "--pool-size", "16", "--json", home=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)["surrogate"]["proxy_evidence"]
    assert s["proxy"] == "synflow" and s["scored"] >= 16 and s["seconds"] > 0 and s["failures"] == 0
    text = run_cli("history", "--run", "latest", home=tmp_path).stdout
    assert "synflow scored" in text
    off = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--budget", "3",
                  "--pool-size", "16", "--proxy-evidence", "off", "--json", home=tmp_path, timeout=300)
    assert off.returncode == 0, off.stderr
    assert "proxy_evidence" not in json.loads(off.stdout)["surrogate"]


@pytest.mark.proxy_evidence
def test_auto_proxy_evidence_is_the_spaces_measured_choice():
    def chosen(value, space):
        return evidence_proxy(Settings(proxy_evidence=value), get_space(space))

    assert chosen("auto", "nb201") == "synflow"  # measured to lift every budget (docs/search.md)
    assert chosen("auto", "layers") is None  # measured not to rank digits networks (bench/layers_table.py)
    assert chosen("auto", "code") is None  # its candidates never build in a trusted process
    assert chosen("off", "nb201") is None and chosen(None, "nb201") is None
    assert chosen("naswot", "layers") == "naswot"
    with pytest.raises(ConfigError, match="'auto', 'off', 'synflow'"):
        load_settings(env={"AGENT_PROXY_EVIDENCE": "synflo"})


def test_proxy_evidence_refuses_code_mode():
    with pytest.raises(UserInputError, match="trusted process"):
        run_search(Settings(task="digits", space="code", budget=2, proxy_evidence="synflow"))


def test_portfolio_without_a_selector_is_the_bandit_alone(tiny_tables):
    p = Portfolio(NB201, 0)
    assert "crossover" not in p.arms and p.pool is None
    guided = Portfolio(NB201, 0, selector=Selector(Objectives()))
    assert "crossover" in guided.arms and guided.pool is not None


def test_the_report_plots_predicted_against_measured_and_names_the_priors(tiny_tables, tmp_path):
    prior = run_search(Settings(task="nb201-cifar100", benchmark_dir=tiny_tables, home=tmp_path, budget=8, seed=1))
    run = run_search(Settings(task="nb201-cifar10", benchmark_dir=tiny_tables, home=tmp_path, budget=12, seed=2,
                              priors=[prior.run_id]))
    out = run_cli("report", run.run_id, home=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "reports" / f"{run.run_id}.html").read_text()
    markdown = (tmp_path / "reports" / f"{run.run_id}.md").read_text()
    assert "Surrogate: predicted against measured" in html and f"priors: {prior.run_id}" in html
    assert f"priors: {prior.run_id} (nb201-cifar100, 8 results)" in markdown


def test_several_objectives_pick_by_expected_hypervolume_improvement(nb201_dir, tmp_path):
    summary = run_search(Settings(task="nb201-cifar10", benchmark_dir=nb201_dir, home=tmp_path, budget=14, seed=0,
                                  objectives=["accuracy", "flops"]))
    assert summary.pareto and summary.duplicates_skipped == 0
    rules = [r["selection"]["rule"] for r in History(tmp_path).run_candidates(summary.run_id)]
    assert rules[0].startswith("evidence and prior only") and rules[-1] == "expected hypervolume improvement"


def test_a_batch_for_several_workers_is_picked_at_once_and_spread(tiny_tables):
    portfolio = Portfolio(NB201, 0, selector=Selector(Objectives()))
    from agent.proposers import ProposalContext

    batch = portfolio.propose(4, ProposalContext(seen=frozenset(), evaluations=0, budget=10))
    keys = {arch_string(p.spec) for p in batch}
    assert len(batch) == 4 and len(keys) == 4
    assert [p.selection["batch_rank"] for p in batch] == [1, 2, 3, 4]
