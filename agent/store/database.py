"""The history's database file: connections, transactions, the schema (created or migrated once per
process) and read-only ad-hoc queries. ``agent.store.history.History`` builds the records on it.

The DuckDB file is shared by any number of processes on one AGENT_HOME.

Concurrency contract (docs/contracts.md): no process keeps the database open. Every read or
write opens the file for one short transaction and closes it; a process that finds the file
locked by another retries with bounded, jittered backoff (``lock_timeout`` seconds in all).
Readers open it read-only. Workers never write here: the coordinator does. Threads of one
process take turns (one lock per process): DuckDB refuses a read-only connection to a file
that the same process has open for writing, which is no lock conflict to wait out.

Our own lock, ``history.duckdb.lock`` beside the file, is held from before the connection
opens until after it closes: shared by readers, exclusive by writers (``flock``; the kernel
drops it when a process dies; ``history.duckdb.lock.turn``, taken in the same mode while
waiting, lets a waiting writer hold back new readers). DuckDB's file lock alone is not enough:
DuckDB 2.0.1 reads the file's header before it takes that lock and works from those bytes
afterwards, so a process that opened while another committed and closed (a close checkpoints
into the file) overwrote the committed transaction with its own close, and several such
processes corrupted the file (../shared/repro/duckdb-header-race; tests/agent/test_history_lock.py).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import random
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from agent.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES_BY_NAME, create_statements
from evaluator.errors import ArchAgentError, NotFoundError

DB_NAME = "history.duckdb"
QUERY_TIMEOUT = 30.0  # seconds an ad-hoc query may run (agent sql --timeout): half the default lock_timeout
LOCK_NAME = DB_NAME + ".lock"  # never deleted: a process may be waiting on it
TURN_SUFFIX = ".turn"  # history.duckdb.lock.turn: a waiting writer's place in line (_FileLock)
# Held while this process has the file open: a search's proposal thread (agent.engine.proposing)
# reads the history and records LLM calls while the graph's thread writes.
_IN_PROCESS = threading.RLock()
# Called after each write transaction commits, before the file is closed: the crash tests kill the
# process there (agent.engine.crash, AGENT_TEST_CRASH_AT=commit:N). None outside those tests.
_after_commit: Callable[[], None] | None = None


def after_commit(hook: Callable[[], None] | None) -> None:
    """Set (or, with None, clear) the hook run after every committed write of this process."""
    global _after_commit
    _after_commit = hook


EXIT_WAIT = 60.0  # seconds an exiting process waits for another thread's transaction to end


_USERS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()  # threads that have opened the history
EXIT_JOIN = 2.0  # seconds an exiting process gives each such thread to leave DuckDB's code


@atexit.register
def _end_transactions_before_exit() -> None:
    """At exit, wait for a transaction another thread has under way and let none start after it:
    Python stops daemon threads where they stand when the interpreter ends, and a thread stopped
    between BEGIN and COMMIT loses a write it was about to acknowledge (a reflection's insights,
    an LLM call's record). The lock is never released: the process is ending. Then give the
    threads that used the history a moment to end: one stopped inside DuckDB's C++ code (freeing
    a closed connection) aborts the whole process ("FATAL: exception not rethrown")."""
    _IN_PROCESS.acquire(timeout=EXIT_WAIT)
    me = threading.current_thread()
    for thread in list(_USERS):
        if thread is not me and thread.is_alive():
            thread.join(EXIT_JOIN)


class HistoryError(ArchAgentError):
    """The history database cannot be used (locked too long, newer schema, damaged)."""


class HistoryDamagedError(HistoryError):
    """The history file is damaged: DuckDB cannot read it. ``agent restore`` puts back a snapshot."""


# DuckDB's words for a file it cannot read (a truncated file, a flipped block, a freed block)
_DAMAGE = re.compile(r"not a valid duckdb database file|could not read enough bytes|corrupt database file|"
                     r"computed checksum|markblockasmodified|freed block|serialization error|invalid block|"
                     r"failed to load metadata|database file .* is truncated", re.IGNORECASE)


def _damaged(path: Path, exc: BaseException) -> HistoryDamagedError:
    return HistoryDamagedError(
        f"the history database {path} is damaged: {str(exc).strip()[:300]}",
        hint=f"`agent restore --home {path.parent}` puts back the newest snapshot (the damaged file is kept beside "
             "it); `agent restore --list` lists them",
    )


# DuckDB's words for "another process holds the file" (not any "lock": a path may hold "blocks",
# and a corrupt block is no conflict to wait out)
_LOCK_CONFLICT = re.compile(r"could not set lock|conflicting lock|resource temporarily unavailable", re.IGNORECASE)


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and _LOCK_CONFLICT.search(str(exc)) is not None


def _held_too_long(path: Path, timeout: float, detail: str) -> HistoryError:
    return HistoryError(
        f"the history database {path} stayed locked by another process for {timeout:g} s: {detail}",
        hint="another process holds it open too long; stop it, or raise lock_timeout in agent.toml",
    )


def _backoff(first: float, cap: float) -> Iterator[float]:
    """The delays between tries of a wait for the file: growing by 1.6 from ``first`` up to ``cap``
    (each try sleeps a jittered share of it), without end: the caller stops at its deadline."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 1.6, cap)


class _FileLock:
    """``flock`` on the lock file beside the database until the ``with`` block ends: shared or
    exclusive, waited for with jittered backoff until ``deadline`` (time.monotonic()).

    A reader that cannot create or open the lock file (a read-only home, made by another user)
    reads without it: no writer can be at work where no writer could create the lock file.
    A process holds one lock at a time (``_IN_PROCESS``); a nested ``with`` in the same thread
    keeps the one it has (DuckDB refuses a second connection of another mode anyway)."""

    _held: "_FileLock | None" = None  # the lock this process holds now (guarded by _IN_PROCESS)

    def __init__(self, path: Path, *, exclusive: bool, deadline: float, database: Path, timeout: float) -> None:
        self.path, self.exclusive, self.deadline, self.database = path, exclusive, deadline, database
        self.timeout = timeout
        self._fd: int | None = None
        self._outer = False

    def __enter__(self) -> "_FileLock":
        held = _FileLock._held
        if held is not None:
            if self.exclusive and not held.exclusive:
                raise RuntimeError(f"a write to {self.database} inside a read of it in the same thread")
            return self
        self._fd = self._open(self.path)
        if self._fd is not None:
            # The turn, held while waiting: a waiting writer stops new readers (flock has no queue;
            # a steady stream of readers kept a writer out for its whole lock_timeout).
            turn = self._open(self.path.with_name(self.path.name + TURN_SUFFIX))
            try:
                if turn is not None:
                    self._wait(turn)
                self._wait(self._fd)
            finally:
                if turn is not None:
                    os.close(turn)
        _FileLock._held, self._outer = self, True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._outer:
            return
        _FileLock._held = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def _open(self, path: Path) -> int | None:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if not self.exclusive and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT):
                try:
                    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
            raise HistoryError(f"cannot open the history's lock file {path}: {exc.strerror or exc}",
                               hint="the home folder must be writable for searches; check its permissions") from None

    def _wait(self, fd: int) -> None:
        """flock ``fd`` (the lock or the turn) in this lock's mode; gives the lock up on failure."""
        mode = (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        for delay in _backoff(0.002, 0.1):
            try:
                fcntl.flock(fd, mode)
                return
            except BlockingIOError:
                pass
            except BaseException:
                os.close(self._fd)
                self._fd = None
                raise
            if time.monotonic() + delay > self.deadline:
                os.close(self._fd)
                self._fd = None
                raise _held_too_long(self.database, self.timeout, f"{self.path.name} is held") from None
            time.sleep(delay * (0.5 + random.random()))


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def dumps_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def loads_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Database:
    """The file ``$AGENT_HOME/history.duckdb``: short transactions, its schema, read-only queries."""


    def __init__(self, home: Path, lock_timeout: float = 60.0) -> None:
        self.home = Path(home)
        self.path = self.home / DB_NAME
        self.lock_timeout = lock_timeout
        self._checked = False

    # -- connections -------------------------------------------------------------------

    @contextmanager
    def _connection(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file, open for this thread alone until closed, under the file lock (see the
        module docstring)."""
        with self.held(exclusive=not read_only) as deadline:
            con = self._open(read_only, deadline)
            try:
                yield con
            except duckdb.Error as exc:
                if _DAMAGE.search(str(exc)):
                    raise _damaged(self.path, exc) from exc
                raise
            finally:
                con.close()

    @contextmanager
    def held(self, exclusive: bool) -> Iterator[float]:
        """The history's lock without a connection: shared, no process writes the file until the
        block ends; exclusive, no process opens it (connections, and snapshots' copy and restore,
        are made under it). Yields the deadline (time.monotonic()) of this wait for the file."""
        with _IN_PROCESS:
            _USERS.add(threading.current_thread())
            deadline = time.monotonic() + self.lock_timeout
            with _FileLock(self.home / LOCK_NAME, exclusive=exclusive, deadline=deadline, database=self.path,
                           timeout=self.lock_timeout):
                yield deadline

    def _open(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        for delay in _backoff(0.005, 0.25):
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                if _DAMAGE.search(str(exc)):
                    raise _damaged(self.path, exc) from None
                if not _is_lock_conflict(exc):
                    raise HistoryError(
                        f"cannot open the history database {self.path}: {exc}",
                        hint="check the path and its permissions; a damaged file can be moved aside to start afresh",
                    ) from None
                if time.monotonic() + delay > deadline:  # a process that does not take our lock
                    raise _held_too_long(self.path, self.lock_timeout, str(exc)) from None
                time.sleep(delay * (0.5 + random.random()))
        raise AssertionError("unreachable: _backoff never ends")

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self._checked:
            self._ensure_schema()
        with self._connection(read_only) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            if _after_commit is not None and not read_only:
                _after_commit()  # tests: a crash between COMMIT and close leaves the write in the WAL

    def exists(self) -> bool:
        return self.path.is_file()

    # -- schema ------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Create the database or upgrade it; refuse a database newer than this code."""
        if not self.exists():
            self._create()
        version = self._read_version()
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"the history database {self.path} has schema version {version}, newer than "
                f"this archagent understands ({SCHEMA_VERSION})",
                hint="upgrade archagent (pip install -U archagent), or use another --home",
            )
        if version < SCHEMA_VERSION:
            with self._connection(read_only=False) as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    self._create_or_migrate(con)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        self._checked = True

    def _create(self) -> None:
        """Make the database beside its final name and link it into place, so no process ever
        opens a half-created file; when several processes race, the first link wins."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"cannot create the home directory {self.home}: {exc.strerror or exc}",
                hint="point --home / AGENT_HOME at a writable folder",
            ) from None
        tmp = self.home / f".{DB_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            con = duckdb.connect(str(tmp))
            try:
                self._create_or_migrate(con)
            finally:
                con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first; theirs is as good as ours
            except OSError:  # a file system without hard links: a rename, unless someone was first
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)

    def _read_version(self) -> int:
        with self._connection(read_only=True) as con:
            return self._version_of(con)

    @staticmethod
    def _version_of(con: duckdb.DuckDBPyConnection) -> int:
        has_meta = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchone()[0]
        if not has_meta:
            return 0
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _create_or_migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        version = self._version_of(con)  # again: another process may have done it meanwhile
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            tables = con.execute("SELECT count(*) FROM information_schema.tables").fetchone()[0]
            if tables:
                raise HistoryError(
                    f"{self.path} is a DuckDB file but not an archagent history (no schema version)",
                    hint="use another --home, or move the file aside",
                )
            for stmt in create_statements():
                con.execute(stmt)
            con.execute("INSERT INTO meta VALUES ('created', ?)", [datetime.now(timezone.utc).isoformat()])
        else:
            for step in MIGRATIONS:
                if step.version > version:
                    for stmt in step.statements:
                        con.execute(stmt)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )

    def schema_version(self) -> int | None:
        return self._read_version() if self.exists() else None

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        names = TABLES_BY_NAME[table].column_names
        unknown = set(rows[0]) - set(names)
        if unknown:
            raise ValueError(f"columns {sorted(unknown)} are not in table {table}")
        cols = list(rows[0])
        con.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [[row[c] for c in cols] for row in rows],
        )

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A read-only transaction, or None when there is no history yet."""
        if not self.exists():
            yield None
            return
        with self._transaction(read_only=True) as con:
            yield con

    @staticmethod
    def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    # -- ad-hoc queries ------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] | None = None, *, max_rows: int | None = None,
              timeout: float | None = QUERY_TIMEOUT) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        """Run one read-only SQL statement on the history: ``(columns, rows, truncated)``.

        The connection is read-only and cut off from everything outside the database (no
        files, no extensions, no other databases), with its configuration locked, so a query
        can neither change the history nor read or write anything else. DuckDB's own errors
        come back as ``HistoryError`` naming the tables to query. A query still running after
        ``timeout`` seconds (None: no limit) is interrupted: while it reads, searches on the
        same home wait for the file, and give up after their ``lock_timeout``."""
        result = self.query_result(sql, params, max_rows=max_rows, timeout=timeout)
        return result.columns, result.rows, result.truncated

    def query_result(self, sql: str, params: Sequence[Any] | None = None, *, max_rows: int | None = None,
                     timeout: float | None = QUERY_TIMEOUT) -> "QueryResult":
        """As :meth:`query`, with each column's DuckDB type (``JSON``, ``TIMESTAMP``, ...)."""
        if not self.exists():
            raise NotFoundError(f"no history yet at {self.path}",
                                hint="run a search first, or point --home / AGENT_HOME at the folder that has one")
        hint = ("the history is read-only here; tables: " + ", ".join(TABLES_BY_NAME)
                + " (`agent sql \"DESCRIBE candidates\"` shows a table's columns)")
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise HistoryError(f"the query failed: {str(exc).strip()}", hint=hint) from None
        if len(statements) != 1:
            raise HistoryError(f"give one SQL statement; the query holds {len(statements)}",
                               hint="run each statement on its own; " + hint)
        if statements[0].type == duckdb.StatementType.TRANSACTION:
            raise HistoryError(f"{sql.strip().rstrip(';')!r} is a transaction statement, not a query: each query "
                               "runs in a read-only transaction of its own", hint="give a SELECT (or DESCRIBE, SHOW, "
                               "PRAGMA) statement; " + hint)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout={timeout!r}: give seconds > 0, or None for no limit")
        with self._transaction(read_only=True) as con:
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            expired = threading.Event()

            def stop() -> None:
                expired.set()
                con.interrupt()

            timer = threading.Timer(timeout, stop) if timeout is not None else None
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                cursor = con.execute(sql, list(params or []))
                if cursor.description is None:
                    return QueryResult([], [], [], False)
                columns = [d[0] for d in cursor.description]
                types = [str(d[1]) for d in cursor.description]
                rows = cursor.fetchmany(max_rows + 1) if max_rows is not None else cursor.fetchall()
            except duckdb.Error as exc:
                if interrupted(exc) and not expired.is_set():
                    raise  # Ctrl-C, noticed by DuckDB first
                if _DAMAGE.search(str(exc)):
                    raise _damaged(self.path, exc) from None
                if expired.is_set():
                    raise HistoryError(
                        f"the query ran past its time limit of {timeout:g} s and was stopped",
                        hint="narrow it (WHERE, LIMIT), or give it more time: agent sql --timeout SECONDS "
                             "(searches on this home wait for the file while a query reads it)") from None
                raise HistoryError(f"the query failed: {str(exc).strip()}", hint=hint) from None
            finally:
                if timer is not None:
                    timer.cancel()
        truncated = max_rows is not None and len(rows) > max_rows
        return QueryResult(columns, types, rows[:max_rows] if truncated else rows, truncated)


def interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised while handling, an interrupt: Ctrl-C or SIGTERM
    (KeyboardInterrupt), including one DuckDB noticed first and reported as its own error
    ("Query interrupted"), so that a stopped run is marked interrupted, not failed."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)) or (
                isinstance(exc, RuntimeError) and "interrupted" in str(exc).lower()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass(frozen=True)
class QueryResult:
    """What :meth:`History.query_result` returns."""

    columns: list[str]
    types: list[str]  # DuckDB's type of each column, as text: "JSON", "TIMESTAMP", "BIGINT", ...
    rows: list[tuple[Any, ...]]
    truncated: bool  # more rows than max_rows matched
