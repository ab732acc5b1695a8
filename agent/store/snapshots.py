"""Snapshots of the history, the second line of defence: copies of ``history.duckdb`` taken at
safe points (a run's end, every ``snapshot_every`` evaluations), the newest ``snapshots_kept``
kept in ``$AGENT_HOME/snapshots/``, and ``agent restore`` to put one back when the file is damaged.

A snapshot is copied while the history's lock is held shared (``agent.store.database``): no
writer has the file open then, so the copy is a committed state; a write-ahead log left by a
killed process is copied beside it (opening the copy replays it). Each copy is opened once
before it is kept: a file that was already damaged makes no snapshot. Restoring moves the
damaged file aside (``history.duckdb.damaged-<time>``, never deleted) and copies the snapshot
into place under the exclusive lock; what was recorded after the snapshot is lost, nothing
before it.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from agent.store.database import Database, HistoryError

FOLDER = "snapshots"
_NAME = re.compile(r"history-(\d{8}T\d{12})Z-([A-Za-z0-9_.-]{1,80})\.duckdb")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    taken: datetime  # UTC
    label: str  # what it was taken after: "<run>-done", "<run>-e100", "restore"
    size: int  # bytes, the write-ahead log included

    def to_json(self) -> dict:
        return {"path": str(self.path), "taken": self.taken.isoformat().replace("+00:00", "Z"),
                "label": self.label, "size": self.size}


def snapshots(home: Path) -> list[Snapshot]:
    """The snapshots in ``home``, newest first."""
    folder = Path(home) / FOLDER
    found = []
    for path in folder.glob("history-*.duckdb") if folder.is_dir() else ():
        match = _NAME.fullmatch(path.name)
        if match is None:
            continue
        taken = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
        wal = path.with_name(path.name + ".wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.is_file() else 0)
        found.append(Snapshot(path=path, taken=taken, label=match.group(2), size=size))
    return sorted(found, key=lambda s: s.path.name, reverse=True)


def take_snapshot(db: Database, label: str, keep: int) -> Snapshot | None:
    """Copy the history into ``snapshots/`` and keep the newest ``keep``; None when there is no
    history yet. Raises HistoryError when the copy does not open (the file is damaged already)."""
    if keep < 1:
        raise ValueError(f"keep={keep}: keep at least one snapshot")
    if not db.exists():
        return None
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", label)[:80] or "snapshot"
    folder = db.home / FOLDER
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc)
    final = folder / f"history-{stamp:%Y%m%dT%H%M%S%f}Z-{label}.duckdb"
    part = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.part"
    try:
        with db.held(exclusive=False):
            _copy_database(db.path, part)
        _check_opens(part)
        wal = part.with_name(part.name + ".wal")
        if wal.exists():
            os.replace(wal, final.with_name(final.name + ".wal"))
        os.replace(part, final)
    finally:
        for leftover in (part, part.with_name(part.name + ".wal")):
            leftover.unlink(missing_ok=True)
    for old in snapshots(db.home)[keep:]:
        old.path.unlink(missing_ok=True)
        old.path.with_name(old.path.name + ".wal").unlink(missing_ok=True)
    return next(s for s in snapshots(db.home) if s.path == final)


def restore_snapshot(db: Database, chosen: Path | str | None = None) -> tuple[Snapshot, Path | None]:
    """Put a snapshot (the newest one that opens, or ``chosen``) in place of the history.
    Returns it and where the replaced file was moved (None when there was none)."""
    candidates = snapshots(db.home)
    if chosen is not None:
        path = Path(chosen)
        path = path if path.is_absolute() or path.parent != Path(".") else db.home / FOLDER / path
        candidates = [s for s in candidates if s.path.resolve() == path.resolve()]
        if not candidates:
            raise HistoryError(f"no snapshot {chosen} in {db.home / FOLDER}",
                               hint="`agent restore --list` lists the snapshots of this home")
    if not candidates:
        raise HistoryError(f"no snapshot to restore in {db.home / FOLDER}",
                           hint="snapshots are taken when a run ends and every snapshot_every evaluations; "
                                "without one, move the damaged file aside to start a new history")
    problems = []
    for snap in candidates:
        try:
            _check_opens(snap.path)
        except HistoryError as exc:
            problems.append(f"{snap.path.name}: {exc}")
            continue
        return snap, _put_in_place(db, snap)
    raise HistoryError("no snapshot opens: " + "; ".join(problems),
                       hint="move the damaged history aside to start a new one")


def _put_in_place(db: Database, snap: Snapshot) -> Path | None:
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    incoming = db.home / f".{db.path.name}.{uuid.uuid4().hex[:8]}.restore"
    try:
        _copy_database(snap.path, incoming)
        with db.held(exclusive=True):
            aside = None
            if db.path.exists():
                aside = db.path.with_name(f"{db.path.name}.damaged-{stamp}")
                os.replace(db.path, aside)
            wal = db.path.with_name(db.path.name + ".wal")
            if wal.exists():
                os.replace(wal, (aside or db.path).with_name((aside or db.path).name + ".wal"))
            incoming_wal = incoming.with_name(incoming.name + ".wal")
            if incoming_wal.exists():
                os.replace(incoming_wal, wal)
            os.replace(incoming, db.path)
    finally:
        for leftover in (incoming, incoming.with_name(incoming.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return aside


def _copy_database(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))


def _check_opens(path: Path) -> None:
    """Open a copy (read-only) and read every table's row count: a damaged copy raises."""
    try:
        con = duckdb.connect(str(path), read_only=True)
        try:
            for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
                con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise HistoryError(f"the copy {path.name} does not open: {str(exc).strip()[:300]}",
                           hint="the history was damaged before this snapshot") from None
