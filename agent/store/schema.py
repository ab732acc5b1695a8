"""The history's schema, declared once.

``TABLES`` is the current schema; the DDL is generated from it. A new database is created
directly at ``SCHEMA_VERSION``. An older database is brought up to date by ``MIGRATIONS``:
frozen SQL steps, one per version, applied in order inside one transaction. To change the
schema: edit ``TABLES``, bump ``SCHEMA_VERSION``, append the step that turns the previous
version into the new one, and add a database of the previous version to the upgrade tests
(tests/assets/). Times are UTC. JSON columns hold pydantic dumps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    doc: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(name: str, type_: str, not_null: bool = False) -> Column:
    return Column(name, type_, not_null)


SCHEMA_VERSION = 6

TABLES: tuple[Table, ...] = (
    Table(
        "meta",
        (_c("key", "VARCHAR", True), _c("value", "VARCHAR")),
        ("key",),
        doc="key/value facts about the database: schema_version, created",
    ),
    Table(
        "runs",
        (
            _c("run_id", "VARCHAR", True),
            _c("task", "VARCHAR", True),
            _c("space", "VARCHAR", True),
            _c("proposer", "VARCHAR", True),
            _c("seed", "BIGINT", True),
            _c("budget", "BIGINT", True),
            _c("status", "VARCHAR", True),
            _c("config", "JSON"),
            _c("created", "TIMESTAMP", True),
            _c("finished", "TIMESTAMP"),
            _c("summary", "JSON"),
            _c("host", "VARCHAR"),
            _c("pid", "BIGINT"),
        ),
        ("run_id",),
        doc="one row per search; status running/done/interrupted/failed",
    ),
    Table(
        "candidates",
        (
            _c("candidate_id", "VARCHAR", True),
            _c("run_id", "VARCHAR", True),
            _c("seq", "BIGINT", True),
            _c("space", "VARCHAR", True),
            _c("spec", "JSON", True),
            _c("canonical_key", "VARCHAR"),
            _c("parents", "JSON", True),
            _c("proposer", "VARCHAR", True),
            _c("model", "VARCHAR"),
            _c("rationale", "VARCHAR"),
            _c("prompt_ref", "VARCHAR"),
            _c("status", "VARCHAR", True),
            _c("error", "VARCHAR"),
            _c("created", "TIMESTAMP", True),
            _c("updated", "TIMESTAMP", True),
            _c("measurements", "JSON"),
            _c("selection", "JSON"),
        ),
        ("candidate_id",),
        indexes=(("run_id",),),
        doc="one row per proposed candidate, with lineage (parents), its current status, what was measured "
            "before training (params, flops, latency_ms, proxy_<name>: the model probe's) and why the portfolio's "
            "surrogate picked it (selection: prediction, interval, acquisition value, operator)",
    ),
    Table(
        "evaluations",
        (
            _c("evaluation_id", "VARCHAR", True),
            _c("candidate_id", "VARCHAR", True),
            _c("run_id", "VARCHAR", True),
            _c("purpose", "VARCHAR", True),
            _c("status", "VARCHAR", True),
            _c("fidelity", "DOUBLE"),
            _c("fidelity_unit", "VARCHAR", True),
            _c("val_accuracy", "DOUBLE"),
            _c("test_accuracy", "DOUBLE"),
            _c("metrics", "JSON", True),
            _c("source", "VARCHAR"),
            _c("wall_seconds", "DOUBLE", True),
            _c("device_seconds", "DOUBLE", True),
            _c("error", "VARCHAR"),
            _c("created", "TIMESTAMP", True),
        ),
        ("evaluation_id",),
        indexes=(("candidate_id",),),
        doc="one row per evaluation; purpose 'search' (validation) or 'final' (test)",
    ),
    Table(
        "curves",
        (
            _c("evaluation_id", "VARCHAR", True),
            _c("candidate_id", "VARCHAR", True),
            _c("epoch", "DOUBLE", True),
            _c("val_accuracy", "DOUBLE"),
            _c("train_loss", "DOUBLE"),
            _c("val_loss", "DOUBLE"),
            _c("train_accuracy", "DOUBLE"),
        ),
        ("evaluation_id", "epoch"),
        doc="learning curves: one row per evaluation and epoch",
    ),
    Table(
        "events",
        (
            _c("event_id", "VARCHAR", True),
            _c("run_id", "VARCHAR", True),
            _c("candidate_id", "VARCHAR"),
            _c("kind", "VARCHAR", True),
            _c("time", "TIMESTAMP", True),
            _c("payload", "JSON", True),
        ),
        ("event_id",),
        doc="append-only log: run started/finished, duplicates skipped, errors",
    ),
    Table(
        "llm_calls",
        (
            _c("call_id", "VARCHAR", True),
            _c("run_id", "VARCHAR", True),
            _c("candidate_id", "VARCHAR"),
            _c("proposal", "VARCHAR"),
            _c("attempt", "BIGINT", True),
            _c("backend", "VARCHAR", True),
            _c("model", "VARCHAR", True),
            _c("template", "VARCHAR", True),
            _c("messages", "JSON", True),
            _c("response", "VARCHAR", True),
            _c("mode", "VARCHAR"),
            _c("tokens_in", "BIGINT", True),
            _c("tokens_out", "BIGINT", True),
            _c("seconds", "DOUBLE", True),
            _c("cost", "DOUBLE"),
            _c("retries", "BIGINT", True),
            _c("outcome", "VARCHAR", True),
            _c("error", "VARCHAR"),
            _c("created", "TIMESTAMP", True),
        ),
        ("call_id",),
        indexes=(("run_id",), ("candidate_id",)),
        doc="one row per LLM call: the messages and reply exactly, tokens, seconds, cost, outcome",
    ),
    Table(
        "insights",
        (
            _c("insight_id", "VARCHAR", True),
            _c("run_id", "VARCHAR", True),
            _c("reflection", "VARCHAR", True),
            _c("position", "BIGINT", True),
            _c("after_evaluations", "BIGINT", True),
            _c("text", "VARCHAR", True),
            _c("call_id", "VARCHAR"),
            _c("created", "TIMESTAMP", True),
        ),
        ("insight_id",),
        indexes=(("run_id",),),
        doc="what reflection distilled from the history: one row per insight; a reflection's set replaces the last",
    ),
    Table(
        "forecasts",
        (
            _c("run_id", "VARCHAR", True),
            _c("candidate_id", "VARCHAR", True),
            _c("epoch", "DOUBLE", True),
            _c("final_epoch", "DOUBLE", True),
            _c("method", "VARCHAR", True),
            _c("reference_curves", "BIGINT", True),
            _c("last_value", "DOUBLE", True),
            _c("mean", "DOUBLE", True),
            _c("lower", "DOUBLE", True),
            _c("median", "DOUBLE", True),
            _c("upper", "DOUBLE", True),
            _c("incumbent", "DOUBLE"),
            _c("p_beat", "DOUBLE", True),
            _c("action", "VARCHAR", True),
            _c("reason", "VARCHAR", True),
            _c("created", "TIMESTAMP", True),
        ),
        ("candidate_id", "epoch"),
        indexes=(("run_id",),),
        doc="every learning-curve forecast of the early-stop rule: final accuracy (mean, 80% interval), "
            "P(beat incumbent), and its action: continue, stop or audit (would stop; trains on to check)",
    ),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}


def create_statements() -> list[str]:
    """DDL for a new database at SCHEMA_VERSION."""
    out = []
    for table in TABLES:
        cols = [f"{c.name} {c.type}{' NOT NULL' if c.not_null else ''}" for c in table.columns]
        cols.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
        out.append(f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(cols) + "\n)")
        for idx in table.indexes:
            out.append(f"CREATE INDEX idx_{table.name}_{'_'.join(idx)} ON {table.name} ({', '.join(idx)})")
    return out


@dataclass(frozen=True)
class Migration:
    """Turns a database at ``version - 1`` into one at ``version``. Frozen once released."""

    version: int
    description: str
    statements: tuple[str, ...]


# Version 1 is the first released schema: databases are created at it, so there is no step
# into it. Each later version appends its step here, as frozen SQL.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "add llm_calls: every LLM call with its messages, reply, tokens, cost and outcome", (
        """CREATE TABLE llm_calls (
  call_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  candidate_id VARCHAR,
  proposal VARCHAR,
  attempt BIGINT NOT NULL,
  backend VARCHAR NOT NULL,
  model VARCHAR NOT NULL,
  template VARCHAR NOT NULL,
  messages JSON NOT NULL,
  response VARCHAR NOT NULL,
  mode VARCHAR,
  tokens_in BIGINT NOT NULL,
  tokens_out BIGINT NOT NULL,
  seconds DOUBLE NOT NULL,
  cost DOUBLE,
  retries BIGINT NOT NULL,
  outcome VARCHAR NOT NULL,
  error VARCHAR,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (call_id)
)""",
        "CREATE INDEX idx_llm_calls_run_id ON llm_calls (run_id)",
        "CREATE INDEX idx_llm_calls_candidate_id ON llm_calls (candidate_id)",
    )),
    Migration(3, "add insights: what each reflection distilled from the history", (
        """CREATE TABLE insights (
  insight_id VARCHAR NOT NULL,
  run_id VARCHAR NOT NULL,
  reflection VARCHAR NOT NULL,
  position BIGINT NOT NULL,
  after_evaluations BIGINT NOT NULL,
  text VARCHAR NOT NULL,
  call_id VARCHAR,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (insight_id)
)""",
        "CREATE INDEX idx_insights_run_id ON insights (run_id)",
    )),
    Migration(4, "add forecasts (the early-stop rule's forecasts and actions) and curves.train_accuracy", (
        """CREATE TABLE forecasts (
  run_id VARCHAR NOT NULL,
  candidate_id VARCHAR NOT NULL,
  epoch DOUBLE NOT NULL,
  final_epoch DOUBLE NOT NULL,
  method VARCHAR NOT NULL,
  reference_curves BIGINT NOT NULL,
  last_value DOUBLE NOT NULL,
  mean DOUBLE NOT NULL,
  lower DOUBLE NOT NULL,
  median DOUBLE NOT NULL,
  upper DOUBLE NOT NULL,
  incumbent DOUBLE,
  p_beat DOUBLE NOT NULL,
  action VARCHAR NOT NULL,
  reason VARCHAR NOT NULL,
  created TIMESTAMP NOT NULL,
  PRIMARY KEY (candidate_id, epoch)
)""",
        "CREATE INDEX idx_forecasts_run_id ON forecasts (run_id)",
        "ALTER TABLE curves ADD COLUMN train_accuracy DOUBLE",
    )),
    Migration(5, "add candidates.measurements: params, FLOPs, latency and proxies measured before training", (
        "ALTER TABLE candidates ADD COLUMN measurements JSON",
    )),
    Migration(6, "add candidates.selection: why the portfolio's surrogate picked a candidate", (
        "ALTER TABLE candidates ADD COLUMN selection JSON",
    )),
)
