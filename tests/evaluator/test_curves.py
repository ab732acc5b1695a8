"""Learning-curve tables and the pool that replays them as training."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from evaluator.pools.replay import CurvePool
from evaluator.tables.curves import load_curve_table
from evaluator.errors import TableError
from evaluator.pools.base import Job
from evaluator.records import Purpose, Status
from evaluator.spaces.nb201 import Nb201Space, arch_string, parse_arch

HEADER = "arch_i,arch_str,train_accs,val_accs"


def cells(n: int, seed: int = 0) -> list[str]:
    rng, space, out = random.Random(seed), Nb201Space(), []
    while len(out) < n:
        arch = arch_string(space.sample(rng))
        if arch not in out:
            out.append(arch)
    return out


def write_curves(path, archs: list[str], epochs: int = 10) -> None:
    """Curves that rise towards a ceiling that grows with the row: the last cell ends best."""
    lines = [HEADER]
    for i, arch in enumerate(archs):
        top = 40 + 50 * (i + 1) / len(archs)
        val = [round(top * (1 - 0.6 ** e), 3) for e in range(1, epochs + 1)]
        train = [min(100.0, v + 5) for v in val]
        lines.append(f'{i},{arch},"{json.dumps(train)}","{json.dumps(val)}"')
    path.write_text("\n".join(lines) + "\n")


def finish(pool: CurvePool) -> list:
    events = []
    while pool.in_flight:
        events += pool.events()
    return events


def test_a_table_reads_fractions_and_refuses_bad_files_by_line(tmp_path):
    archs = cells(4)
    write_curves(tmp_path / "c.csv", archs, epochs=5)
    table = load_curve_table(tmp_path / "c.csv")
    assert table.epochs == 5 and table.archs == archs and 0 < table.val[archs[0]][0] < table.val[archs[0]][-1] < 1
    assert table.train[archs[0]][0] == pytest.approx(table.val[archs[0]][0] + 0.05)
    cases = {
        "arch_i,val_accs\n0,[1]\n": "missing column(s) arch_str",
        f"{HEADER}\n0,|nope~0|,[1],[1]\n": "line 2",
        f'{HEADER}\n0,{archs[0]},"[1, 2]","[1, 2]"\n1,{archs[0]},"[1, 2]","[1, 2]"\n': "appears twice",
        f'{HEADER}\n0,{archs[0]},"[1, 2]","[1, 2]"\n1,{archs[1]},"[1, 2]","[1, 2, 3]"\n': "3 epochs of val_accs, but",
        f'{HEADER}\n0,{archs[0]},"[1, 2]","[1, 200]"\n': "percentages in [0, 100]",
        f'{HEADER}\n0,{archs[0]},"[1, 2]","[1, x]"\n': "val_accs is not a JSON list",
        f"{HEADER}\n": "has no rows",
    }
    for text, words in cases.items():
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(TableError, match=re.escape(words)):
            load_curve_table(tmp_path / "bad.csv")
    with pytest.raises(TableError, match="no curves file"):
        load_curve_table(tmp_path / "missing.csv")


def test_the_pool_replays_epochs_stops_at_a_fidelity_and_continues_a_checkpoint(tmp_path):
    archs = cells(3)
    write_curves(tmp_path / "c.csv", archs, epochs=6)
    table = load_curve_table(tmp_path / "c.csv")
    pool = CurvePool(table, capacity=2)
    spec = parse_arch(archs[1])
    pool.submit(Job(candidate_id="a", spec=spec, fidelity=2, checkpoint=True))
    pool.submit(Job(candidate_id="b", spec=parse_arch(archs[2])))
    with pytest.raises(RuntimeError, match="pool is full"):
        pool.submit(Job(candidate_id="c", spec=spec))
    events = finish(pool)
    progress = [(e.candidate_id, e.data["epoch"]) for e in events if e.kind == "progress"]
    assert progress[:4] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]  # concurrent jobs interleave epoch by epoch
    done = {e.candidate_id: e.evaluation for e in events if e.kind == "finished"}
    assert done["a"].status is Status.OK and done["a"].fidelity == 2 and done["a"].val_accuracy == table.val[archs[1]][1]
    assert done["b"].fidelity == 6 and [p.train_accuracy for p in done["b"].curve] == table.train[archs[2]]
    pool.submit(Job(candidate_id="a", spec=spec, resume=True))
    events = finish(pool)
    assert events[0].data["from_epoch"] == 2 and [e.data["epoch"] for e in events if e.kind == "progress"] == [3, 4, 5, 6]
    full = events[-1].evaluation
    assert [p.val_accuracy for p in full.curve] == table.val[archs[1]] and full.val_accuracy == table.val[archs[1]][-1]
    with pytest.raises(ValueError, match="holds none"):
        pool.submit(Job(candidate_id="a", spec=spec, resume=True))


def test_cancel_ends_a_replay_with_its_epochs_so_far_and_unknown_cells_fail(tmp_path):
    archs = cells(3)
    write_curves(tmp_path / "c.csv", archs[:2], epochs=6)
    pool = CurvePool(load_curve_table(tmp_path / "c.csv"))
    pool.submit(Job(candidate_id="a", spec=parse_arch(archs[0])))
    first = pool.events()
    assert [e.kind for e in first] == ["started", "progress"]
    assert pool.cancel("a", status=Status.STOPPED_EARLY, reason="hopeless") and not pool.cancel("zzz")
    (done,) = pool.events()
    assert done.evaluation.status is Status.STOPPED_EARLY and done.evaluation.error == "hopeless"
    assert len(done.evaluation.curve) == 1 and done.evaluation.val_accuracy is None
    pool.submit(Job(candidate_id="b", spec=parse_arch(archs[2])))
    (_, failed) = pool.events()
    assert failed.evaluation.status is Status.FAILED and "not in the curves file" in failed.evaluation.error
    pool.submit(Job(candidate_id="a", spec=parse_arch(archs[1]), purpose=Purpose.FINAL))
    (final,) = pool.events()
    assert final.evaluation.test_accuracy is None and "no test split" in final.evaluation.source


def test_a_real_time_replay_runs_on_the_wall_clock_between_calls(tmp_path):
    archs = cells(2)
    write_curves(tmp_path / "c.csv", archs, epochs=4)
    table = load_curve_table(tmp_path / "c.csv")
    assert CurvePool(table).background is False  # virtual time: results exist only inside events()
    pool = CurvePool(table, capacity=2, seconds_per_epoch=0.02, realtime=True)
    assert pool.background is True
    start = time.monotonic()
    pool.submit(Job(candidate_id="a", spec=parse_arch(archs[0])))
    assert [e.kind for e in pool.events(timeout=0)] == ["started"]  # nothing is due yet: no wait
    time.sleep(0.1)  # the job goes on while nobody asks: its 4 epochs (0.08 s) are done by now
    pool.submit(Job(candidate_id="b", spec=parse_arch(archs[1])))
    events = pool.events(timeout=0)
    assert [(e.kind, e.candidate_id) for e in events] == [("started", "b")] + [("progress", "a")] * 4 + [("finished", "a")]
    assert pool.events(timeout=0) == [] and pool.in_flight == 1
    done = finish(pool)  # blocks for b's epochs, which started when it was submitted
    assert [e.kind for e in done][-1] == "finished" and time.monotonic() - start >= 0.1 + 4 * 0.02
    assert done[-1].evaluation.curve[-1].val_accuracy == table.val[archs[1]][-1]


def test_a_restricted_space_stays_inside_its_cells():
    archs = cells(12)
    space = Nb201Space(cells=frozenset(archs), cells_source="c.csv")
    rng = random.Random(0)
    for _ in range(30):
        spec = space.sample(rng)
        child = space.mutate(spec, rng)
        assert arch_string(spec) in archs and arch_string(child) in archs and child != spec
    assert "restricted to the 12 cells of c.csv" in space.describe()
    outside = next(a for a in cells(40, seed=1) if a not in archs)
    with pytest.raises(Exception, match="not among the 12 cells of c.csv"):
        space.validate(outside)
