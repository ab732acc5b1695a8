"""The history: every run, candidate, evaluation, LLM call, insight, forecast and event, written
by the coordinator in short transactions (``agent.store.database``) and read back by the CLI,
reports, chat sessions and resumed runs. Workers never write here: the coordinator does.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone
from typing import Any
from collections.abc import Callable, Sequence

from agent.records import ForecastRecord, LLMCall, LLMOutcome, Run, RunStatus
from agent.store.database import DB_NAME, Database, HistoryError, dumps_json, loads_json, naive_utc
from evaluator.errors import NotFoundError
from evaluator.records import Candidate, Evaluation, Status


class RunBusyError(HistoryError):
    """Another live process is searching the run (History.append_candidate)."""


class History(Database):
    """All the records of ``$AGENT_HOME/history.duckdb`` (the ``agent.store.recorder.Recorder`` a
    search writes to by default)."""

    def create_run(self, run: Run) -> None:
        with self._transaction() as con:
            self._insert(con, "runs", [{
                "run_id": run.run_id, "task": run.task, "space": run.space, "proposer": run.proposer,
                "seed": run.seed, "budget": run.budget, "status": run.status.value,
                "config": dumps_json(run.config), "created": naive_utc(run.created),
                "host": socket.gethostname(), "pid": os.getpid(),
            }])
            self._insert(con, "events", [self._event_row(run.run_id, "run_started", {"pid": os.getpid()})])

    def add_candidates(self, candidates: Sequence[Candidate], events: Sequence[dict[str, Any]] = ()) -> None:
        """Insert candidates (any status) and events such as skipped duplicates, in one transaction.

        An event is ``{"run_id", "kind", "payload", "candidate_id"?}``.
        """
        if not candidates and not events:
            return
        with self._transaction() as con:
            self._insert(con, "events", [
                self._event_row(e["run_id"], e["kind"], e.get("payload", {}), e.get("candidate_id")) for e in events
            ])
            self._insert(con, "candidates", [self._candidate_row(c) for c in candidates])

    def append_candidate(self, run_id: str, build: Callable[[int], Candidate],
                         event: Callable[[Candidate], dict[str, Any]] | None = None) -> Candidate:
        """Add the run's next candidate, ``build(seq)`` with ``seq`` one past the run's last, and
        ``event(candidate)`` beside it, in one transaction: two processes that add to one run at
        once (a chat session, a resumed loop) get different numbers. While another live process
        searches the run it is refused with :class:`RunBusyError`: that process numbers its own."""
        with self._transaction() as con:
            status, host, pid = con.execute("SELECT status, host, pid FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if status == RunStatus.RUNNING.value and pid != os.getpid() and (host != socket.gethostname() or _alive(pid)):
                raise RunBusyError(f"run {run_id} is being searched by another process (pid {pid} on {host})",
                                   hint="wait until that process stops, then try again")
            seq = con.execute("SELECT coalesce(max(seq) + 1, 0) FROM candidates WHERE run_id = ?", [run_id]).fetchone()[0]
            candidate = build(int(seq))
            if candidate.run_id != run_id or candidate.seq != seq:
                raise ValueError(f"build({seq}) made candidate {candidate.candidate_id} of run {candidate.run_id}, "
                                 f"seq {candidate.seq}: it must use the run and the number it is given")
            self._insert(con, "candidates", [self._candidate_row(candidate)])
            if event is not None:
                e = event(candidate)
                self._insert(con, "events", [self._event_row(e["run_id"], e["kind"], e.get("payload", {}),
                                                             e.get("candidate_id"))])
        return candidate

    @staticmethod
    def _candidate_row(c: Candidate) -> dict[str, Any]:
        return {
            "candidate_id": c.candidate_id, "run_id": c.run_id, "seq": c.seq, "space": c.space,
            "spec": dumps_json(c.spec), "canonical_key": c.canonical_key, "parents": dumps_json(c.parents),
            "proposer": c.proposer, "model": c.model, "rationale": c.rationale,
            "prompt_ref": c.prompt_ref, "status": c.status.value, "error": c.error,
            "created": naive_utc(c.created), "updated": naive_utc(c.created),
            "measurements": dumps_json(c.measurements) if c.measurements else None,
            "selection": dumps_json(c.selection) if c.selection else None,
        }

    def set_status(self, candidate_ids: Sequence[str], status: Status, error: str | None = None) -> None:
        """Set the candidates' status (and, given, their error text)."""
        if not candidate_ids:
            return
        now = naive_utc(datetime.now(timezone.utc))
        with self._transaction() as con:
            con.executemany(
                "UPDATE candidates SET status = ?, updated = ?, error = coalesce(?, error) WHERE candidate_id = ?",
                [[status.value, now, error, cid] for cid in candidate_ids],
            )

    def add_evaluations(self, run_id: str, evaluations: Sequence[Evaluation], update_status: bool = True) -> None:
        """Store evaluations with their curves; search evaluations also set the candidate's status."""
        if not evaluations:
            return
        with self._transaction() as con:
            rows, curve_rows = [], []
            for ev in evaluations:
                eid = f"{ev.candidate_id}-{ev.purpose.value}-{uuid.uuid4().hex[:8]}"
                rows.append({
                    "evaluation_id": eid, "candidate_id": ev.candidate_id, "run_id": run_id,
                    "purpose": ev.purpose.value, "status": ev.status.value, "fidelity": ev.fidelity,
                    "fidelity_unit": ev.fidelity_unit, "val_accuracy": ev.val_accuracy,
                    "test_accuracy": ev.test_accuracy, "metrics": dumps_json(ev.metrics), "source": ev.source,
                    "wall_seconds": ev.wall_seconds, "device_seconds": ev.device_seconds,
                    "error": ev.error, "created": naive_utc(ev.created),
                })
                curve_rows += [{
                    "evaluation_id": eid, "candidate_id": ev.candidate_id, "epoch": p.epoch,
                    "val_accuracy": p.val_accuracy, "train_loss": p.train_loss, "val_loss": p.val_loss,
                    "train_accuracy": p.train_accuracy,
                } for p in ev.curve]
            self._insert(con, "evaluations", rows)
            self._insert(con, "curves", curve_rows)
            if update_status:
                now = naive_utc(datetime.now(timezone.utc))
                con.executemany(
                    "UPDATE candidates SET status = ?, error = ?, updated = ? WHERE candidate_id = ?",
                    [[ev.status.value, ev.error, now, ev.candidate_id] for ev in evaluations if ev.purpose.value == "search"],
                )

    @staticmethod
    def _event_row(run_id: str, kind: str, payload: dict[str, Any], candidate_id: str | None = None) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4().hex, "run_id": run_id, "candidate_id": candidate_id, "kind": kind,
            "time": naive_utc(datetime.now(timezone.utc)), "payload": dumps_json(payload),
        }

    def add_llm_calls(self, calls: Sequence[LLMCall]) -> None:
        """Append LLM calls (messages and reply exactly as sent and received)."""
        if not calls:
            return
        with self._transaction() as con:
            self._insert(con, "llm_calls", [
                c.model_dump(mode="python") | {"messages": dumps_json(c.messages), "outcome": c.outcome.value,
                                               "created": naive_utc(c.created)} for c in calls])

    def llm_calls(self, run_id: str | None = None, candidate_id: str | None = None,
                  proposal: str | None = None) -> list[dict[str, Any]]:
        """The calls of a run, of a candidate, or of one proposal (a candidate's prompt_ref), oldest first."""
        if proposal is not None:
            where, params = "proposal = ?", [proposal]
        elif candidate_id is not None:
            where, params = "candidate_id = ?", [candidate_id]
        else:
            where, params = "run_id = ?", [run_id]
        with self._reader() as con:
            if con is None:
                return []
            rows = self._dicts(con.execute(f"SELECT * FROM llm_calls WHERE {where} ORDER BY created, attempt", params))
        for r in rows:
            r["messages"] = loads_json(r["messages"])
        return rows

    def llm_totals(self, run_id: str) -> dict[str, Any]:
        """Accounting for a run's LLM calls: the summary's ``llm`` object.

        ``schema_valid_rate``: share of proposal replies that parsed into the schema;
        ``valid_rate``: share of proposals whose last attempt also passed the space's checks
        (after repairs); ``repairs``: calls that were repair attempts."""
        valid, spec_invalid = LLMOutcome.VALID.value, LLMOutcome.SPEC_INVALID.value
        with self._reader() as con:
            if con is None:
                row = None
            else:
                row = con.execute(f"""
                    WITH calls AS (SELECT * FROM llm_calls WHERE run_id = ?),
                         last AS (SELECT proposal, arg_max(outcome, attempt) AS outcome FROM calls
                                  WHERE proposal IS NOT NULL GROUP BY proposal)
                    SELECT count(*), sum(tokens_in), sum(tokens_out), sum(seconds), sum(cost), count(cost),
                           count(*) FILTER (WHERE attempt > 0),
                           count(*) FILTER (WHERE proposal IS NOT NULL AND outcome != 'failed'),
                           count(*) FILTER (WHERE proposal IS NOT NULL AND outcome IN ('{valid}', '{spec_invalid}')),
                           (SELECT count(*) FROM last), (SELECT count(*) FROM last WHERE outcome = '{valid}')
                    FROM calls""", [run_id]).fetchone()
        calls, t_in, t_out, seconds, cost, priced, repairs, replies, parsed, proposals, valid_n = row or (0,) * 11
        return {"calls": calls, "schema_valid_rate": parsed / replies if replies else None,
                "valid_rate": valid_n / proposals if proposals else None, "repairs": repairs,
                "tokens_in": int(t_in or 0), "tokens_out": int(t_out or 0), "seconds": round(float(seconds or 0), 3),
                "cost": round(float(cost), 6) if priced else None}

    def add_insights(self, run_id: str, reflection: str, texts: Sequence[str], *, after_evaluations: int,
                     call_id: str | None = None) -> None:
        """Store one reflection's insights; the newest reflection's set is what prompts show."""
        if not texts:
            return
        now = naive_utc(datetime.now(timezone.utc))
        with self._transaction() as con:
            self._insert(con, "insights", [
                {"insight_id": f"{reflection}-{i}", "run_id": run_id, "reflection": reflection, "position": i,
                 "after_evaluations": after_evaluations, "text": text, "call_id": call_id, "created": now}
                for i, text in enumerate(texts)])

    def insights(self, run_id: str, *, latest: bool = True) -> list[dict[str, Any]]:
        """The insights of the run's newest reflection (``latest``), or of every reflection, in order."""
        where = "run_id = ?"
        if latest:
            where += (" AND reflection = (SELECT arg_max(reflection, created) FROM insights WHERE run_id = ?)")
        with self._reader() as con:
            if con is None:
                return []
            return self._dicts(con.execute(
                f"SELECT reflection, position, after_evaluations, text, call_id, created FROM insights WHERE {where} "
                "ORDER BY created, reflection, position", [run_id, run_id] if latest else [run_id]))

    def add_forecasts(self, forecasts: Sequence[ForecastRecord]) -> None:
        """Store the early-stop rule's forecasts (one per candidate and epoch)."""
        if not forecasts:
            return
        with self._transaction() as con:
            self._insert(con, "forecasts", [f.model_dump(mode="python") | {"created": naive_utc(f.created)}
                                            for f in forecasts])

    def forecasts(self, run_id: str | None = None, candidate_id: str | None = None) -> list[dict[str, Any]]:
        """The forecasts of a run or of one candidate, in the order they were made."""
        where, params = ("candidate_id = ?", [candidate_id]) if candidate_id is not None else ("run_id = ?", [run_id])
        with self._reader() as con:
            if con is None:
                return []
            return self._dicts(con.execute(f"SELECT * FROM forecasts WHERE {where} ORDER BY created, candidate_id, epoch",
                                           params))

    def add_event(self, run_id: str, kind: str, payload: dict[str, Any] | None = None, candidate_id: str | None = None) -> None:
        with self._transaction() as con:
            self._insert(con, "events", [self._event_row(run_id, kind, payload or {}, candidate_id)])

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any] | None) -> None:
        """Close the run. Candidates still ``running`` (a stop in mid-evaluation) go back to
        ``queued``, in the same transaction, so a resumed run evaluates them again."""
        with self._transaction() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = ? WHERE run_id = ?",
                [status.value, naive_utc(datetime.now(timezone.utc)), dumps_json(summary) if summary is not None else None, run_id],
            )
            requeued = con.execute("UPDATE candidates SET status = 'queued' WHERE run_id = ? AND status = 'running' "
                                   "RETURNING candidate_id", [run_id]).fetchall()
            payload = {"status": status.value} | ({"requeued": sorted(r[0] for r in requeued)} if requeued else {})
            self._insert(con, "events", [self._event_row(run_id, "run_finished", payload)])

    _RUN_ROWS = """
        SELECT r.run_id, r.task, r.status, r.created, r.space, r.proposer, r.seed, r.budget, r.finished,
               coalesce(e.evaluations, 0) AS evaluations, e.best_val_accuracy
        FROM runs r LEFT JOIN (
            SELECT c.run_id,
                   count(*) FILTER (WHERE c.status NOT IN ('queued', 'running', 'invalid')) AS evaluations,
                   max(v.val_accuracy) AS best_val_accuracy
            FROM candidates c LEFT JOIN (
                SELECT candidate_id, max(val_accuracy) AS val_accuracy FROM evaluations
                WHERE purpose = 'search' AND status = 'ok' GROUP BY candidate_id
            ) v ON v.candidate_id = c.candidate_id
            GROUP BY c.run_id
        ) e ON e.run_id = r.run_id
    """

    def list_runs(self) -> list[dict[str, Any]]:
        with self._reader() as con:
            if con is None:
                return []
            return self._dicts(con.execute(self._RUN_ROWS + " ORDER BY r.created, r.run_id"))

    def resolve_run_id(self, run: str) -> str:
        """A run id, or 'latest' for the newest run."""
        with self._reader() as con:
            if con is not None:
                if run == "latest":
                    row = con.execute("SELECT run_id FROM runs ORDER BY created DESC, run_id DESC LIMIT 1").fetchone()
                else:
                    row = con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run]).fetchone()
                if row:
                    return row[0]
        raise NotFoundError(
            f"no run {run!r} in the history at {self.home}" if run != "latest" else f"no runs yet in {self.home}",
            hint="`agent history` lists the runs; check --home / AGENT_HOME",
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        run_id = self.resolve_run_id(run_id)
        with self._reader() as con:
            row = self._dicts(con.execute(self._RUN_ROWS + " WHERE r.run_id = ?", [run_id]))[0]
            extra = con.execute("SELECT config, summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
        row["config"], row["summary"] = loads_json(extra[0]), loads_json(extra[1])
        return row

    def run_candidates(self, run_id: str) -> list[dict[str, Any]]:
        with self._reader() as con:
            if con is None:
                return []
            rows = self._dicts(con.execute(
                """
                SELECT c.candidate_id, c.seq, c.status, v.val_accuracy, f.test_accuracy, f.final_runs,
                       c.canonical_key, c.proposer, c.parents, c.spec, c.error, c.created, c.measurements,
                       c.selection
                FROM candidates c
                LEFT JOIN (  -- the latest search evaluation
                    SELECT candidate_id, arg_max(val_accuracy, created) AS val_accuracy FROM evaluations
                    WHERE purpose = 'search' GROUP BY candidate_id
                ) v ON v.candidate_id = c.candidate_id
                LEFT JOIN (  -- the final report: the mean over its seeds
                    SELECT candidate_id, avg(test_accuracy) AS test_accuracy, count(*) AS final_runs FROM evaluations
                    WHERE purpose = 'final' AND status = 'ok' GROUP BY candidate_id
                ) f ON f.candidate_id = c.candidate_id
                WHERE c.run_id = ? ORDER BY c.seq
                """,
                [run_id],
            ))
        for row in rows:
            row["parents"], row["spec"], row["selection"] = (loads_json(row[k]) for k in ("parents", "spec", "selection"))
            row["measurements"] = loads_json(row["measurements"]) or {}
        return rows

    def prompt_history(self, run_id: str, *, best: int = 8, recent: int = 5, diverse: int = 5, failures: int = 5,
                       seed: int = 0) -> dict[str, list[dict[str, Any]]]:
        """What a prompt shows of a run: the best ok candidates, the most recent finished ones
        that are not among the best, a seeded sample of the other ok ones, and the latest
        failures with their errors."""
        base = """
            WITH v AS (SELECT candidate_id, arg_max(val_accuracy, created) AS val_accuracy FROM evaluations
                       WHERE purpose = 'search' AND run_id = $run GROUP BY candidate_id)
            SELECT c.candidate_id, c.seq, c.status, v.val_accuracy, c.spec, c.error, c.measurements
            FROM candidates c LEFT JOIN v ON v.candidate_id = c.candidate_id WHERE c.run_id = $run
        """  # the run's evaluations only: on a home of 100,000 candidates the whole table made a prompt slow
        queries = {
            "best": (base + " AND c.status = 'ok' ORDER BY v.val_accuracy DESC, c.seq LIMIT $n",
                     {"run": run_id, "n": best}),
            "recent": (base + " AND c.status NOT IN ('queued', 'running') ORDER BY c.seq DESC LIMIT $n",
                       {"run": run_id, "n": recent + best}),
            "diverse": (f"SELECT * FROM ({base} AND c.status = 'ok' ORDER BY v.val_accuracy DESC, c.seq OFFSET $skip) "
                        "ORDER BY hash(candidate_id || $seed::VARCHAR) LIMIT $n",
                        {"run": run_id, "skip": best, "seed": seed, "n": diverse + recent}),
            "failures": (base + " AND c.status IN ('failed', 'timeout', 'invalid') ORDER BY c.seq DESC LIMIT $n",
                         {"run": run_id, "n": failures}),
        }
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in queries}
        with self._reader() as con:
            if con is None:
                return out
            for name, (sql, params) in queries.items():
                out[name] = self._dicts(con.execute(sql, params))
        best_ids = {r["candidate_id"] for r in out["best"]}
        out["recent"] = [r for r in out["recent"] if r["candidate_id"] not in best_ids][:recent]
        recent_ids = {r["candidate_id"] for r in out["recent"]}
        out["diverse"] = [r for r in out["diverse"] if r["candidate_id"] not in recent_ids][:diverse]
        for rows in out.values():
            for r in rows:
                r["spec"], r["measurements"] = loads_json(r["spec"]), loads_json(r["measurements"]) or {}
        return out

    def get_candidate(self, candidate_id: str) -> dict[str, Any]:
        with self._reader() as con:
            row = None
            if con is not None:
                found = self._dicts(con.execute("SELECT * FROM candidates WHERE candidate_id = ?", [candidate_id]))
                row = found[0] if found else None
            if row is None:
                raise NotFoundError(
                    f"no candidate {candidate_id!r} in the history at {self.home}",
                    hint="`agent history --run RUN` lists a run's candidates; check --home / AGENT_HOME",
                )
            evals = self._dicts(con.execute(
                "SELECT * FROM evaluations WHERE candidate_id = ? ORDER BY created, evaluation_id", [candidate_id]
            ))
            curves = self._dicts(con.execute(
                "SELECT evaluation_id, epoch, val_accuracy, train_loss, val_loss, train_accuracy FROM curves "
                "WHERE candidate_id = ? ORDER BY evaluation_id, epoch", [candidate_id]
            ))
            forecasts = self._dicts(con.execute(
                "SELECT epoch, final_epoch, method, reference_curves, last_value, mean, lower, median, upper, incumbent, "
                "p_beat, action, reason FROM forecasts WHERE candidate_id = ? ORDER BY epoch", [candidate_id]))
        row["spec"], row["parents"], row["selection"] = (loads_json(row[k]) for k in ("spec", "parents", "selection"))
        row["measurements"] = loads_json(row["measurements"]) or {}
        for ev in evals:
            ev["metrics"] = loads_json(ev["metrics"])
            ev["curve"] = [
                {k: v for k, v in c.items() if k != "evaluation_id"} for c in curves if c["evaluation_id"] == ev["evaluation_id"]
            ]
        row["evaluations"] = evals
        row["forecasts"] = forecasts
        return row

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._reader() as con:
            if con is None:
                return []
            rows = self._dicts(con.execute("SELECT * FROM events WHERE run_id = ? ORDER BY time, event_id", [run_id]))
        for row in rows:
            row["payload"] = loads_json(row["payload"])
        return rows

    # -- resuming a run ------------------------------------------------------------------

    def claim_run(self, run_id: str, *, budget: int | None = None, config_update: dict[str, Any] | None = None,
                  max_resumes: int = 1000) -> dict[str, Any]:
        """Take over a run that stopped (crashed, interrupted, finished) so that this process
        continues it, in one transaction: candidates left ``running`` go back to ``queued``,
        the run is ``running`` again under this process, and a ``run_resumed`` event records
        what was re-queued. A run whose recorded process is still alive on this host is refused.
        Returns ``{"resumes", "requeued", "previous_status"}``."""
        run_id = self.resolve_run_id(run_id)
        with self._transaction() as con:
            status, host, pid, config = con.execute(
                "SELECT status, host, pid, config FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if status == RunStatus.RUNNING.value and pid != os.getpid():
                if host == socket.gethostname() and _alive(pid):
                    raise HistoryError(f"run {run_id} is still running (pid {pid} on this machine)",
                                       hint=f"stop that process first (kill {pid}); it marks the run interrupted and "
                                            "the resume can continue it")
                if host != socket.gethostname():
                    raise HistoryError(f"run {run_id} is marked running on another machine ({host}, pid {pid})",
                                       hint="resume it there, or stop that process first; two coordinators must never "
                                            "continue one run")
            resumes = con.execute("SELECT count(*) FROM events WHERE run_id = ? AND kind = 'run_resumed'",
                                  [run_id]).fetchone()[0]
            if resumes >= max_resumes:
                raise HistoryError(f"run {run_id} was resumed {resumes} times already",
                                   hint="something makes it crash every time: `agent history --run RUN` and the run's "
                                        "events show what; start a new run instead")
            requeued = [r[0] for r in con.execute(
                "UPDATE candidates SET status = 'queued', updated = ? WHERE run_id = ? AND status = 'running' "
                "RETURNING candidate_id", [naive_utc(datetime.now(timezone.utc)), run_id]).fetchall()]
            merged = (loads_json(config) or {}) | (config_update or {})
            con.execute("UPDATE runs SET status = 'running', finished = NULL, host = ?, pid = ?, config = ?, "
                        "budget = coalesce(?, budget) WHERE run_id = ?",
                        [socket.gethostname(), os.getpid(), dumps_json(merged), budget, run_id])
            payload = {"pid": os.getpid(), "previous_status": status, "requeued": sorted(requeued)}
            self._insert(con, "events", [self._event_row(run_id, "run_resumed", payload)])
        return {"resumes": resumes + 1, "requeued": sorted(requeued), "previous_status": status}

    def run_records(self, run_id: str) -> tuple[list[Candidate], list[Evaluation]]:
        """A run's candidates (in order) and all its evaluations with their curves (oldest
        first), as the records the search made them from: what a resumed search rebuilds from."""
        with self._reader() as con:
            if con is None:
                return [], []
            cands = self._dicts(con.execute("SELECT * FROM candidates WHERE run_id = ? ORDER BY seq", [run_id]))
            evals = self._dicts(con.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY created, evaluation_id",
                                            [run_id]))
            points = self._dicts(con.execute(
                "SELECT c.evaluation_id, c.epoch, c.val_accuracy, c.train_loss, c.val_loss, c.train_accuracy "
                "FROM curves c JOIN evaluations e ON e.evaluation_id = c.evaluation_id WHERE e.run_id = ? "
                "ORDER BY c.evaluation_id, c.epoch", [run_id]))
        curves: dict[str, list[dict[str, Any]]] = {}
        for p in points:
            curves.setdefault(p.pop("evaluation_id"), []).append(p)
        candidates = [Candidate(
            candidate_id=c["candidate_id"], run_id=c["run_id"], seq=c["seq"], space=c["space"], spec=loads_json(c["spec"]),
            canonical_key=c["canonical_key"], parents=loads_json(c["parents"]) or [], proposer=c["proposer"],
            model=c["model"], rationale=c["rationale"], prompt_ref=c["prompt_ref"], status=Status(c["status"]),
            error=c["error"], measurements=loads_json(c["measurements"]) or {}, selection=loads_json(c["selection"]),
            created=c["created"].replace(tzinfo=timezone.utc)) for c in cands]
        evaluations = [_evaluation(e, curves.get(e["evaluation_id"], [])) for e in evals]
        return candidates, evaluations

    def final_evaluations(self, candidate_id: str) -> list[Evaluation]:
        """A candidate's final (test split) evaluations, oldest first."""
        with self._reader() as con:
            if con is None:
                return []
            rows = self._dicts(con.execute("SELECT * FROM evaluations WHERE candidate_id = ? AND purpose = 'final' "
                                           "ORDER BY created, evaluation_id", [candidate_id]))
        return [_evaluation(r, []) for r in rows]

    def add_direction(self, run_id: str, text: str, *, source: str = "chat") -> int:
        """Store a user's direction for a run (a constraint, a preference, something to avoid):
        later prompts of the run show it. Returns how many directions the run has now."""
        with self._transaction() as con:
            self._insert(con, "events", [self._event_row(run_id, "direction", {"text": text, "source": source})])
            return con.execute("SELECT count(*) FROM events WHERE run_id = ? AND kind = 'direction'",
                               [run_id]).fetchone()[0]

    def directions(self, run_id: str) -> list[str]:
        """The run's stored directions, oldest first."""
        return [e["payload"]["text"] for e in self.events(run_id) if e["kind"] == "direction"]

    def checkpoint(self, label: str, keep: int) -> str | None:
        """A snapshot of the history file (agent.store.snapshots); its path, or None before any record."""
        from agent.store.snapshots import take_snapshot

        snap = take_snapshot(self, label, keep)
        return None if snap is None else str(snap.path)

    def count_events(self, run_id: str, kind: str) -> int:
        with self._reader() as con:
            if con is None:
                return 0
            return con.execute("SELECT count(*) FROM events WHERE run_id = ? AND kind = ?", [run_id, kind]).fetchone()[0]


def _evaluation(row: dict[str, Any], curve: list[dict[str, Any]]) -> Evaluation:
    return Evaluation(
        candidate_id=row["candidate_id"], purpose=row["purpose"], status=Status(row["status"]), fidelity=row["fidelity"],
        fidelity_unit=row["fidelity_unit"], val_accuracy=row["val_accuracy"], test_accuracy=row["test_accuracy"],
        curve=curve, metrics=loads_json(row["metrics"]) or {}, source=row["source"], wall_seconds=row["wall_seconds"],
        device_seconds=row["device_seconds"], error=row["error"], created=row["created"].replace(tzinfo=timezone.utc))


def _alive(pid: int | None) -> bool:
    """Whether a process with this pid runs here (a process we may not signal counts as alive)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


__all__ = ["DB_NAME", "History", "HistoryError"]
