"""Snapshots of the history and `agent restore`: a damaged file is named as damaged with the
command that restores it, and restoring the last snapshot brings back everything before it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import agent
from agent.config import Settings
from agent.engine.runner import run_search
from agent.store import History, HistoryError
from agent.store.database import HistoryDamagedError
from agent.store.recorder import MemoryRecorder
from agent.store.snapshots import FOLDER, snapshots, take_snapshot
from tests.conftest import run_cli


def _search(tiny_tables: Path, home: Path, budget: int = 6, seed: int = 0, **kw):
    return run_search(Settings(home=home, task="nb201-cifar10", benchmark_dir=tiny_tables, proposer="random",
                               budget=budget, seed=seed, **kw))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 3)


def _flip_blocks(path: Path) -> None:
    """Overwrite a few bytes inside every 256 KB block after the headers (DuckDB's block size)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        for offset in range(12288, size, 262144):
            fh.seek(offset + 100)
            fh.write(bytes(range(64)))


def test_a_search_keeps_snapshots_every_n_evaluations_and_at_its_end(tiny_tables, tmp_path):
    home = tmp_path / "home"
    summary = _search(tiny_tables, home, budget=6, snapshot_every=2, snapshots_kept=3)
    taken = snapshots(home)
    assert [s.label for s in taken] == [f"{summary.run_id}-done", f"{summary.run_id}-e6", f"{summary.run_id}-e4"]
    assert all(s.size > 0 and s.path.parent == home / FOLDER for s in taken)
    assert not list((home / FOLDER).glob(".*"))  # no partial copy left behind
    listed = json.loads(run_cli("restore", "--list", "--json", home=home).stdout)["snapshots"]
    assert [s["label"] for s in listed] == [s.label for s in taken]
    assert MemoryRecorder().checkpoint("x", 1) is None  # nothing on disk to copy


@pytest.mark.parametrize("damage", [_truncate, _flip_blocks], ids=["truncated", "flipped-block"])
def test_a_damaged_history_names_the_restore_command_and_restoring_brings_back_the_snapshot(
        tiny_tables, tmp_path, damage):
    home = tmp_path / "home"
    first = _search(tiny_tables, home, seed=1)
    before = History(home).run_candidates(first.run_id)
    damage(home / "history.duckdb")

    out = run_cli("history", home=home)
    assert out.returncode == 1 and "is damaged" in out.stderr
    assert f"agent restore --home {home}" in out.stderr, out.stderr
    with pytest.raises(HistoryDamagedError):
        History(home).list_runs()

    out = run_cli("restore", "--json", home=home)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["restored"]["label"] == f"{first.run_id}-done"
    aside = Path(result["moved_aside"])
    assert aside.parent == home and aside.name.startswith("history.duckdb.damaged-") and aside.is_file()
    assert History(home).run_candidates(first.run_id) == before  # everything up to the snapshot
    second = _search(tiny_tables, home, seed=2)  # and the home is usable again
    assert {r["run_id"] for r in History(home).list_runs()} == {first.run_id, second.run_id}


def test_a_damaged_file_makes_no_snapshot_and_a_home_without_snapshots_says_so(tiny_tables, tmp_path):
    home = tmp_path / "home"
    _search(tiny_tables, home, snapshots_kept=1)
    (good,) = snapshots(home)
    _flip_blocks(home / "history.duckdb")
    with pytest.raises(HistoryError, match="does not open"):
        take_snapshot(History(home), "late", keep=1)
    assert snapshots(home) == [good] and not list((home / FOLDER).glob(".*"))

    empty = tmp_path / "empty"
    History(empty)._ensure_schema()
    with pytest.raises(HistoryError, match="no snapshot to restore") as err:
        agent.api.restore(home=empty)
    assert "snapshot_every" in err.value.hint
    out = run_cli("restore", "nope.duckdb", home=home)
    assert out.returncode == 1 and "no snapshot nope.duckdb" in out.stderr and "--list" in out.stderr


def test_restoring_skips_a_snapshot_that_does_not_open(tiny_tables, tmp_path):
    home = tmp_path / "home"
    first = _search(tiny_tables, home, seed=1)
    _search(tiny_tables, home, seed=2)
    newest, older = snapshots(home)[:2]
    _flip_blocks(newest.path)
    os.utime(newest.path)
    result = agent.api.restore(home=home)
    assert result["restored"]["path"] == str(older.path)
    assert [r["run_id"] for r in History(home).list_runs()] == [first.run_id]
