"""`agent report`: the HTML page (self-contained, figures embedded, history text escaped), the
Markdown beside it, the random-search baseline, early-stop marks, lineage and the errors."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import statistics
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.config import Settings
from agent.store import History
from evaluator.errors import ArchAgentError, NotFoundError, UserInputError
from agent.records import ForecastRecord, LLMCall, LLMOutcome, Run, RunStatus
from evaluator.records import Candidate, CurvePoint, Evaluation, Status
from evaluator.spaces.nb201 import arch_string, parse_arch
from tests.conftest import BENCHDATA, ROOT, run_cli, child_env

CURVES_FILE = BENCHDATA / "curves" / "nb201_cifar10valid_200archs_curves.csv"
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')
ATTACK = "<script>alert(1)</script>"


def figures_of(page: str) -> dict[str, tuple[bytes, str]]:
    """Figure name -> (PNG bytes, alt text), from the page's <figure id="fig-NAME"> elements."""
    out = {}
    for name, body in re.findall(r'<figure id="fig-([a-z]+)">(.*?)</figure>', page, re.S):
        match = IMG.search(body)
        assert match, f"figure {name} has no embedded PNG"
        out[name] = (base64.b64decode(match.group(1), validate=True), match.group(2))
    return out


def check_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"<script\b", page, re.I) and not re.search(r"<link\b", page, re.I)
    assert not re.search(r"@import|url\(", page, re.I)  # the inline style loads nothing either
    assert re.findall(r'<img [^>]*src="([^"]{0,30})', page) and all(
        s.startswith("data:image/png;base64,") for s in re.findall(r'<img [^>]*src="([^"]{0,30})', page))
    assert "default-src 'none'" in page  # and the page forbids every request by policy


def check_png(png: bytes, name: str) -> None:
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.width >= 500 and image.height >= 250, (name, image.size)
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert pixels.var() > 300, (name, pixels.var())  # not a blank canvas
    # and data is drawn: axes, grid and text are grey or black, every mark of data is in colour
    # (an empty set of axes of the same size has no coloured pixel at all)
    coloured = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())
    assert coloured > 150, (name, coloured)


def history_sha(home: Path) -> str:
    return hashlib.sha256((home / "history.duckdb").read_bytes()).hexdigest()


# -- the acceptance test: a real digits search, then the real CLI ------------------------------

@pytest.mark.slow
def test_report_of_a_real_digits_search(tmp_path):
    home = tmp_path / "home"
    # --max-flops keeps the samples small and --workers 2 trains two at once: the search takes ~20 s
    out = run_cli("search", "--task", "digits", "--proposer", "evolution", "--budget", "4", "--epochs", "1",
                  "--final-seeds", "1", "--max-flops", "20000000", "--proxies", "none", "--workers", "2", "--json",
                  home=home, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run_id = json.loads(out.stdout)["run_id"]
    before = history_sha(home)

    rep = run_cli("report", run_id, home=home)
    assert rep.returncode == 0, rep.stderr
    assert history_sha(home) == before  # the report only reads the history
    printed = dict(re.findall(r"^(report|markdown): (.+)$", rep.stdout, re.M))
    html_path, md_path = Path(printed["report"]), Path(printed["markdown"])
    assert html_path == (home / "reports" / f"{run_id}.html").resolve() and html_path.is_file()
    assert md_path == html_path.with_suffix(".md") and md_path.is_file()
    page = html_path.read_text()
    check_self_contained(page)
    figures = figures_of(page)
    assert set(figures) == {"progress", "pareto", "curves"}  # no lineage: the 4 evolution samples are random
    for name, (png, alt) in figures.items():
        check_png(png, name)
        assert len(alt) > 40 and run_id in alt
    assert len(IMG.findall(page)) == 3

    detail = json.loads(run_cli("history", "--run", run_id, "--json", home=home).stdout)
    ok = [c for c in detail["candidates"] if c["status"] == "ok"]
    best = max(ok, key=lambda c: c["val_accuracy"])
    text = md_path.read_text()
    assert f"best by validation: {best['candidate_id']}, validation accuracy {best['val_accuracy']:.4f}" in text
    assert text in rep.stdout  # piped: the Markdown as it is
    summary = detail["summary"]["best"]
    assert f"test accuracy {summary['test_accuracy']:.4f} ± 0.0000 over 1 seed(s) (0)" in text
    # the sections without data say why
    assert "no random-search baseline: no other run of task digits with proposer random" in page
    assert f"the best candidate {best['candidate_id']} has no parents in this run" in page
    assert "no LLM calls in this run" in page and "Each candidate trained one epoch" in page
    params = {c["candidate_id"]: c["measurements"]["params"] for c in ok}
    assert f"{params[best['candidate_id']]:,}" in page


# -- replayed learning curves: the baseline, early-stop marks, the Pareto front ----------------

@pytest.fixture(scope="module")
def curves_home(tmp_path_factory):
    if not CURVES_FILE.is_file():
        pytest.skip(f"learning-curve file not found at {CURVES_FILE} (../shared/benchdata is only in the team's "
                    "checkouts and CI)")
    from agent.engine.runner import run_search

    home = tmp_path_factory.mktemp("curves") / "home"
    task = f"curves:{CURVES_FILE}"
    older = run_search(Settings(home=home, task=task, proposer="random", budget=2, seed=1))
    random_run = run_search(Settings(home=home, task=task, proposer="random", budget=8))
    search = run_search(Settings(home=home, task=task, proposer="evolution", budget=12, early_stop="asha", rungs=[20],
                                 reduction_factor=2, objectives=["accuracy", "params"], population=4, tournament=2))
    h = History(home)
    # a newer random run that never finished: the baseline is still the newest finished one
    h.create_run(Run(run_id="zz-unfinished", task=random_run.task, space="nb201", proposer="random", seed=3, budget=9))
    return home, older.run_id, random_run.run_id, search


@pytest.mark.slow
def test_report_overlays_the_random_baseline_marks_pruned_curves_and_draws_the_front(curves_home, tmp_path):
    from agent.reporting.data import gather

    home, older_id, random_id, search = curves_home
    out_dir = tmp_path / "out"
    rep = run_cli("report", search.run_id, "--out", str(out_dir), "--json", home=home)
    assert rep.returncode == 0, rep.stderr
    result = json.loads(rep.stdout)
    assert result == {"run_id": search.run_id, "html": str((out_dir / f"{search.run_id}.html").resolve()),
                      "markdown": str((out_dir / f"{search.run_id}.md").resolve()),
                      "figures": ["progress", "pareto", "curves", "lineage"]}
    page = Path(result["html"]).read_text()
    check_self_contained(page)
    figures = figures_of(page)
    assert list(figures) == result["figures"]
    for name, (png, _) in figures.items():
        check_png(png, name)

    h = History(home)
    data = gather(h, search.run_id)
    # the baseline: the newest finished random run of the same task, overlaid and named
    assert data.baseline is not None and data.baseline.run_id == random_id != older_id
    random_vals = [c["val_accuracy"] for c in h.run_candidates(random_id) if c["status"] == "ok"]
    assert data.baseline.random_average == pytest.approx(statistics.fmean(random_vals))
    progress_alt = figures["progress"][1]
    assert f"random-search baseline, run {random_id}, reaches {max(random_vals):.4f} after 8" in progress_alt
    ri = (search.best.val_accuracy - statistics.fmean(random_vals)) / statistics.fmean(random_vals)
    assert f"Relative improvement over the random-sample average: {100 * ri:+.2f}%" in page
    assert f"random-search baseline: run {random_id} (done, 8 evaluations; the newest finished of 3" in page
    assert [p.best for p in data.baseline.progress][-1] == max(random_vals)
    # successive halving pruned half at the rung (epoch 20): drawn dashed, each marked where it stopped
    pruned = [c for c in h.run_candidates(search.run_id) if c["status"] == "pruned"]
    assert len(pruned) == search.counts["pruned"] >= 3
    assert {k.candidate_id for k in data.curves.stopped} == {c["candidate_id"] for c in pruned}
    assert {k.stopped_at for k in data.curves.stopped} == {20.0} and all(len(k.points) == 20 for k in data.curves.stopped)
    curves_alt = figures["curves"][1]
    assert f"{len(pruned)} candidates that did not train to the end ({len(pruned)} pruned, 0 stopped early), marked " \
           "where they stopped (epochs 20)" in curves_alt
    assert [k.candidate_id for k in data.curves.top] == [c.candidate_id for c in data.top[:6]]
    assert all(len(k.points) == 200 for k in data.curves.top)
    # the front: accuracy against params (an objective of the run), every ok candidate drawn
    assert data.pareto.metric == "params" and len(data.pareto.points) == search.counts["ok"]
    front = {cid: (x, a) for cid, x, a in data.pareto.points if cid in data.pareto.front}
    for cid, x, a in data.pareto.points:  # nothing dominates a front member; every other point is dominated
        dominated = any(fx <= x and fa >= a and (fx, fa) != (x, a) for fx, fa in front.values())
        assert dominated != (cid in front)
    assert set(data.pareto.front) == {m["candidate_id"] for m in search.pareto}  # the run's own front, same objectives
    assert search.best.candidate_id in data.pareto.front  # the most accurate is always on it
    text = Path(result["markdown"]).read_text()
    assert "non-dominated in validation accuracy and parameters" in text
    assert f"random-search baseline: run {random_id}" in text.split("## Against random search")[1]


# -- a run written through the history: escaping, LLM statistics, lineage, a running run ---------

CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|none~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"]


def write_portfolio_run(home: Path, run_id: str = "r-portfolio", *, finish: bool = True) -> dict:
    """A small LLM-portfolio run: c0 -> c1 -> c3 (the best, an LLM proposal whose rationale is an attack),
    c2 stopped early with a forecast, c4 pruned, c5 failed with a hostile error, c6 invalid."""
    h = History(home)
    t0 = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
    h.create_run(Run(run_id=run_id, task="nb201-cifar10", space="nb201", proposer="portfolio", seed=0, budget=8,
                     config={"epochs": 10, "llm": "openai", "model": "m<b>x</b>"}, created=t0))
    rows = [  # seq, status, proposer, parents, rationale, final val, epochs trained, error
        (0, Status.OK, "portfolio:random", [], "warm-up sample", 0.80, 10, None),
        (1, Status.OK, "portfolio:mutation", [0], "one edit of c0000", 0.85, 10, None),
        (2, Status.STOPPED_EARLY, "portfolio:llm", [0], "try pooling", None, 4, "stopped early: P(beat) 0.01"),
        (3, Status.OK, "portfolio:llm", [1], f"deeper convs {ATTACK} | `x` [img](http://e.x/a.png)", 0.91, 10, None),
        (4, Status.PRUNED, "portfolio:random", [], "sample", None, 3, "pruned by successive halving at 3 of 10 epochs"),
        (5, Status.FAILED, "portfolio:llm", [3], "bold", None, 0, f"the candidate raised: {ATTACK}"),
        (6, Status.INVALID, "portfolio:llm", [], "bad", None, 0, "edge_1_0: <unknown op>"),
    ]
    cid = {seq: f"{run_id}-c{seq:04d}" for seq, *_ in rows}
    candidates, evaluations = [], []
    for seq, status, proposer, parents, rationale, val, epochs, error in rows:
        spec = parse_arch(CELLS[seq])
        candidates.append(Candidate(candidate_id=cid[seq], run_id=run_id, seq=seq, space="nb201", spec=spec,
                                    canonical_key=None if status is Status.INVALID else arch_string(spec),
                                    parents=[cid[p] for p in parents], proposer=proposer,
                                    model="m" if "llm" in proposer else None, rationale=rationale, status=status, error=error,
                                    measurements={"params": 100_000 * (seq + 1)},
                                    created=t0 + timedelta(minutes=seq)))
        if status is Status.INVALID:
            continue
        curve = [CurvePoint(epoch=e, val_accuracy=round((val or 0.6) * (0.5 + 0.5 * e / 10), 4))
                 for e in range(1, epochs + 1)]
        evaluations.append(Evaluation(candidate_id=cid[seq], status=status, fidelity=epochs, curve=curve,
                                      val_accuracy=val, metrics={"epochs": epochs}, wall_seconds=30.0 * max(epochs, 1),
                                      error=error, created=t0 + timedelta(minutes=seq, seconds=50)))
    h.add_candidates(candidates)
    h.add_evaluations(run_id, evaluations)
    h.add_forecasts([ForecastRecord(run_id=run_id, candidate_id=cid[2], epoch=4, final_epoch=10, method="pfn",
                                    reference_curves=2, last_value=0.42, mean=0.7, lower=0.62, median=0.7, upper=0.78,
                                    incumbent=0.85, p_beat=0.01, action="stop", reason="unlikely")])
    h.add_llm_calls([LLMCall(call_id=f"call{i}", run_id=run_id, proposal=f"p{i // 2}", attempt=i % 2, backend="openai",
                             model="m<b>x</b>", template="propose.j2", messages=[{"role": "user", "content": "x"}],
                             response="{}", tokens_in=1000 + i, tokens_out=100, seconds=1.5, cost=0.01,
                             outcome=LLMOutcome.VALID if i % 2 else LLMOutcome.SPEC_INVALID) for i in range(4)])
    h.add_insights(run_id, "refl-1", ["3x3 convolutions help", f"avoid {ATTACK}"], after_evaluations=4)
    summary = {"best": {"candidate_id": cid[3], "val_accuracy": 0.91, "test_accuracy": 0.905, "test_accuracy_std": 0.004,
                        "seeds": [0, 1, 2], "test_source": "test split"},
               "stop_reason": "budget reached", "wall_seconds": 5400.0, "proposals": 9, "duplicates_skipped": 2,
               "objectives": ["accuracy"],
               "operators": {"cost": "evaluation", "operators": {
                   "llm": {"proposals": 4, "outcomes": 4, "mean_reward": 0.5, "best": 0.91, "seconds": 40.0,
                           "dollars": 0.04, "share": 0.5},
                   "mutation": {"proposals": 1, "outcomes": 1, "mean_reward": 1.0, "best": 0.85, "seconds": 300.0,
                                "dollars": 0.0, "share": 0.125},
                   "random": {"proposals": 3, "outcomes": 2, "mean_reward": None, "best": 0.8, "seconds": 390.0,
                              "dollars": 0.0, "share": 0.375}}}}
    if finish:
        h.finish_run(run_id, RunStatus.DONE, summary)
    return cid


@pytest.mark.slow
def test_history_text_is_escaped_and_every_section_reads_a_portfolio_run(tmp_path):
    import agent
    from agent.reporting.data import gather

    home = tmp_path / "home"
    cid = write_portfolio_run(home)
    result = agent.report("latest", out=tmp_path / "mine.html", home=home)
    assert result["html"] == str((tmp_path / "mine.html").resolve())
    assert result["markdown"] == str((tmp_path / "mine.md").resolve())
    assert result["figures"] == ["progress", "pareto", "curves", "operators", "lineage"]
    page = Path(result["html"]).read_text()
    check_self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "alert(1)</script>" not in page
    assert "m&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "&lt;unknown op&gt;" in page  # the invalid candidate's error, in the failures table
    for name, (png, _) in figures_of(page).items():
        check_png(png, name)
    text = Path(result["markdown"]).read_text()
    assert "<script>" not in text and "\\<script\\>alert(1)\\</script\\>" in text
    assert "\\[img\\](http://e.x/a.png)" in text  # no image a Markdown viewer would fetch

    data = gather(History(home), "r-portfolio")
    assert [n.candidate_id for n in data.lineage.nodes] == [cid[3], cid[1], cid[0]]
    assert [n.depth for n in data.lineage.nodes] == [0, 1, 2]
    assert [(k.candidate_id, k.stopped_at, k.forecast["median"]) for k in data.curves.stopped if k.forecast] == \
        [(cid[2], 4.0, 0.7)]
    assert {k.candidate_id: k.status for k in data.curves.stopped} == {cid[2]: "stopped_early", cid[4]: "pruned"}
    assert [p.evaluations for p in data.progress] == [1, 2, 3, 4, 5, 6]  # the invalid one is not an evaluation
    assert [p.best for p in data.progress] == [0.8, 0.85, 0.85, 0.91, 0.91, 0.91]
    assert data.progress[-1].seconds == 30.0 * (10 + 10 + 4 + 10 + 3 + 1)
    # the header, the final report, the LLM accounting and the portfolio's operators
    assert "test accuracy 0.9050 ± 0.0040 over 3 seed(s) (0, 1, 2)" in page and "1 h 30 min" in page
    assert "9 (2 duplicates skipped, never evaluated)" in page
    llm_table = page.split("<h3>LLM calls</h3>")[1].split("</table>")[0]
    assert [re.sub("<.*?>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", llm_table)] == \
        ["4", "100.0%", "100.0%", "2", "4,006", "400", "6.0", "$0.0400"]
    assert "<td class=\"text\">mutation</td><td class=\"num\">1</td><td class=\"num\">12%</td>" in page
    assert "3x3 convolutions help" in page and "after 4 evaluations" in page
    assert f"<code>{cid[3]}</code>" in page.split('id="lineage"')[1]
    assert "3 ok, 1 invalid, 1 failed, 1 stopped_early, 1 pruned" in page


@pytest.mark.slow
def test_a_running_run_reports_what_is_there(tmp_path):
    import pexpect

    from agent.reporting.data import gather

    home = tmp_path / "home"
    cid = write_portfolio_run(home, "r-live", finish=False)
    History(home).set_status([cid[5]], Status.RUNNING)
    now = datetime(2026, 1, 2, 3, 20, tzinfo=timezone.utc)
    data = gather(History(home), "r-live", now=now)
    assert data.status == "running" and data.stop_reason == "still running"
    assert data.wall_seconds == 1200.0 and data.wall_note.startswith("so far")
    assert data.counts["running"] == 1 and data.evaluations == 5
    assert data.final is None and data.best.candidate_id == cid[3]
    # on a terminal the Markdown is rendered (rich), then the paths
    env = child_env() | {"AGENT_HOME": str(home)}
    child = pexpect.spawn(sys.executable, ["-m", "agent", "report", "latest"], env=env, cwd=str(ROOT), encoding="utf-8",
                          dimensions=(60, 200), timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before.replace("\r\n", "\n"))  # no colours
    assert child.exitstatus == 0, shown
    assert "archagent report: run r-live" in shown and "# archagent report" not in shown  # a rendered heading
    assert "\\<script\\>" not in shown and "<script>alert(1)</script>" in shown  # escapes rendered away, as text
    html_path = Path(re.search(r"^report: (\S+)$", shown, re.M).group(1))
    assert html_path == (home / "reports" / "r-live.html").resolve()
    page = html_path.read_text()
    assert "still running" in page and "final report: none yet" in page and "1 running" in page
    # no operators figure: a running run has no summary yet
    assert re.findall(r'<figure id="fig-([a-z]+)"', page) == ["progress", "pareto", "curves", "lineage"]


# -- errors ------------------------------------------------------------------------------------

def test_unknown_run_unwritable_out_and_missing_matplotlib_are_errors_with_a_fix(tmp_path, monkeypatch):
    import agent

    home = tmp_path / "home"
    with pytest.raises(NotFoundError, match="no runs yet") as err:
        agent.report("latest", home=home)
    assert "`agent history` lists the runs" in err.value.hint
    assert not (home / "history.duckdb").exists()  # a report never creates a history
    write_portfolio_run(home)
    before = history_sha(home)
    missing = run_cli("report", "r-nope", home=home)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "error: no run 'r-nope' in the history" in missing.stderr and "hint: `agent history` lists the runs" in missing.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = run_cli("report", "r-portfolio", "--out", str(blocker / "reports"), home=home)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"error: cannot write the report to --out {blocker / 'reports'}" in bad.stderr
    assert "hint: pass --out a folder you can write to" in bad.stderr
    with pytest.raises(UserInputError, match="cannot write the report"):
        agent.report("r-portfolio", out=blocker / "x.html", home=home)
    with pytest.raises(NotFoundError):
        agent.report("r-nope", home=home)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the report extra were not installed
    with pytest.raises(ArchAgentError) as err:
        agent.report("r-portfolio", home=home)
    assert "matplotlib, which is not installed" in err.value.message and "archagent[report]" in err.value.hint
    assert history_sha(home) == before and not (home / "reports").exists()
