"""Configuration: flags > environment > agent.toml > built-in defaults.

``agent.toml`` is read from the working directory and from ``$AGENT_HOME`` (the working
directory's file wins). Keys are the setting names below, at the top level of the file;
relative paths in a file are relative to that file. Every setting can also come from the
environment as ``AGENT_<NAME>`` (``AGENT_HOME``, ``AGENT_BENCHMARK_DIR``, ...). Unknown keys
and wrongly typed values are errors that name the key, the source and the fix.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer, field_validator

from evaluator.errors import ConfigError, did_you_mean
from evaluator.measure import PROXY_NAMES, ProxyName

EVIDENCE_PROXIES: tuple[str, ...] = ("auto", "off", *PROXY_NAMES)  # proxy_evidence's values
EvidenceProxy = Literal[EVIDENCE_PROXIES]  # one Literal, so a bad value's error lists every choice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "agent.toml"
ENV_PREFIX = "AGENT_"


def public_url(url: str) -> str:
    """``url`` fit to store and print: a user name and password become ``***``, and so does every
    query value (``?api_key=...``); the fragment goes. Endpoints are often given with their key in
    them; the key must not reach the history, the reports or an error message."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(f"{pair.partition('=')[0]}=***" for pair in parts.query.split("&") if pair) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class Settings(BaseModel):
    """Every setting, with its built-in default."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(default=Path("runs"), description="history database and artifacts")
    benchmark_dir: Path | None = Field(default=None, description="folder with the NAS-Bench-201 tables")
    signal_table: Path | None = Field(default=None, description="12-epoch table, overrides benchmark_dir")
    final_table: Path | None = Field(default=None, description="200-epoch table, overrides benchmark_dir")
    task: str | None = Field(default=None, description="default task for `agent search`")
    proposer: Literal["random", "evolution", "llm", "portfolio"] | None = Field(
        default=None, description="how candidates are proposed; None: portfolio when an LLM is configured (llm), else evolution")
    budget: int | None = Field(default=None, gt=0, description="evaluations; None: the task's default")
    minutes: float | None = Field(default=None, gt=0, description="wall-clock limit of a search")
    seed: int = Field(default=0, ge=0)
    space: str | None = Field(default=None, description="search space; None: the task's default")
    space_file: Path | None = Field(default=None, description="a search space declared in a TOML file (docs/spaces.md): its slots, and a lookup table or a builder to train")
    tables: list[Path] | None = Field(default=None, description="space_file: the tables to look candidates up in, replacing the file's own (CSV or JSON)")
    population: int = Field(default=20, ge=2, description="regularized evolution: population size")
    tournament: int = Field(default=5, ge=1, description="regularized evolution: tournament sample size")
    lock_timeout: float = Field(default=60.0, gt=0, description="seconds to wait for the history database")
    data_dir: Path | None = Field(default=None, description="an existing copy of a data set (cifar10: the folder with cifar-10-batches-py)")
    epochs: int | None = Field(default=None, gt=0, description="epochs per candidate on training tasks; None: the task's")
    workers: int | None = Field(default=None, ge=1, le=1024, description="candidates trained at once; None: 1 (local pool), or as many as the Ray cluster holds (pool ray)")
    warm_workers: int = Field(default=1, ge=0, le=64, description="training workers kept started ahead of their candidates (each runs one candidate, in its own sandbox); 0: every candidate starts its worker cold")
    timeout: float = Field(default=600.0, gt=0, description="wall-clock seconds one candidate may train")
    memory_mb: int = Field(default=4096, ge=256, description="memory limit of one worker, MB (address space and resident memory)")
    disk_mb: int = Field(default=2048, ge=16, description="disk quota of one worker's scratch folder, MB (the only place it may write)")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where candidates train")
    pool: Literal["local", "ray"] = Field(default="local", description="where training jobs run: local (processes on this machine) or ray (actors on a Ray cluster; pip install 'archagent[ray]')")
    ray_address: str | None = Field(default=None, description="pool ray: the cluster to join (auto, or HOST:PORT of `ray start --head`); None: start a private cluster on 127.0.0.1")
    ray_cpus: float = Field(default=1.0, gt=0, description="pool ray: CPUs each candidate asks for (also its training threads)")
    ray_gpus: float | None = Field(default=None, ge=0, description="pool ray: GPUs each candidate asks for (0.5 shares a GPU between two); None: 1 when the cluster has GPUs and device is not cpu, else 0")
    ray_retries: int = Field(default=2, ge=0, le=10, description="pool ray: times a candidate whose worker or node was lost is queued again before it fails")
    final_seeds: int = Field(default=3, ge=1, le=10, description="seeds of the final retraining of the best candidate")
    llm: Literal["local", "openai"] | None = Field(default=None, description="LLM backend: local (in-process model) or openai (any OpenAI-compatible endpoint)")
    model: str | None = Field(default=None, description="LLM model: a GGUF file, a model folder or a hub id (local), a model name (openai); None: the default offline model")
    openai_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (also OPENAI_BASE_URL)")
    openai_api_key: SecretStr | None = Field(default=None, description="API key of the endpoint (also OPENAI_API_KEY); never stored or printed")
    model_cache: Path | None = Field(default=None, description="where local models are joined and converted (1.7 GB for the default); None: $XDG_CACHE_HOME/archagent/models or ~/.cache/archagent/models")
    llm_timeout: float = Field(default=120.0, gt=0, description="seconds one LLM call may take before it is retried")
    llm_price_in: float | None = Field(default=None, ge=0, description="dollars per million prompt tokens, for cost accounting")
    llm_price_out: float | None = Field(default=None, ge=0, description="dollars per million completion tokens, for cost accounting")
    max_llm_cost: float | None = Field(default=None, gt=0, description="dollars of LLM calls after which a search stops (needs llm_price_in/out for openai)")
    max_device_seconds: float | None = Field(default=None, gt=0, description="device seconds (training time of every evaluation) after which a search stops")
    snapshot_every: int = Field(default=100, ge=0, description="every this many evaluations a search copies the history into $AGENT_HOME/snapshots (also when a run ends); 0: only when a run ends")
    snapshots_kept: int = Field(default=5, ge=1, le=1000, description="snapshots of the history kept (the newest); agent restore puts one back")
    recheck_every: int = Field(default=0, ge=0, description="every this many evaluations, the top recheck_top candidates train again with recheck_seeds new seeds (validation only; training tasks); 0: never (agent loop: 10)")
    recheck_top: int = Field(default=3, ge=1, le=20, description="rechecks: how many of the best candidates are trained again")
    recheck_seeds: int = Field(default=2, ge=1, le=10, description="rechecks: extra seeds per rechecked candidate")
    reflect_every: int = Field(default=10, ge=0, description="LLM proposers: distil insights from the history every this many evaluations; 0: never")
    portfolio_cost: Literal["evaluation", "second", "dollar"] = Field(default="evaluation", description="portfolio: what an operator's improvement is measured per")
    early_stop: Literal["auto", "off", "forecast", "asha", "both"] = Field(default="auto", description="training tasks: forecast (stop candidates whose learning-curve forecast says they will not beat the best finished one), asha (asynchronous successive halving over --rungs), both, or off; auto: asha for the surrogate-guided portfolio (the default proposer), off for the other proposers and --surrogate off")
    early_stop_threshold: float = Field(default=0.05, gt=0, lt=1, description="early stop: stop when P(final > incumbent) falls below this")
    audit_fraction: float = Field(default=0.1, ge=0, le=1, description="early stop: share of would-be-stopped candidates that train on, to measure the forecast's live error")
    rungs: list[int] | None = Field(default=None, description="successive halving: epochs at which candidates are compared (default: epochs / eta^k, e.g. 2, 5 for 15 epochs)")
    reduction_factor: int = Field(default=3, ge=2, le=16, description="successive halving: the top 1/eta of a rung continues")
    objectives: list[Literal["accuracy", "latency", "params", "flops"]] | None = Field(default=None, description="what the search optimises: accuracy (maximised) and optionally latency, params, flops (minimised); several give a Pareto front; None: accuracy, or the space file's objectives")
    max_latency_ms: float | None = Field(default=None, gt=0, description="hard limit on batch-1 inference latency (ms), measured before training")
    max_params: int | None = Field(default=None, gt=0, description="hard limit on the parameter count, checked before training")
    max_flops: int | None = Field(default=None, gt=0, description="hard limit on FLOPs (multiply-accumulates per image), checked before training")
    proxies: list[ProxyName] = Field(default_factory=lambda: list(PROXY_NAMES), description="zero-cost proxies each training worker scores on a training batch before training (recorded; [] for none)")
    screen: ProxyName | None = Field(default=None, description="screen proposals by this zero-cost proxy before training: propose screen_factor times as many, train the best")
    screen_factor: int = Field(default=4, ge=2, le=20, description="screening: proposals made for every candidate trained")
    llm_after: int = Field(default=8, ge=0, description="portfolio: finished candidates before its LLM operators propose (the LLM proposes from a history, which needs results)")
    surrogate: Literal["on", "off"] = Field(default="on", description="portfolio: on, the operators fill a pool of proposals and a surrogate model over the run's evaluations picks which are evaluated (expected improvement); off, every proposal is evaluated as its operator made it")
    pool_size: int = Field(default=256, ge=8, le=10_000, description="portfolio with the surrogate: unevaluated proposals the surrogate chooses from at each step")
    proxy_evidence: EvidenceProxy = Field(default="auto", description="portfolio with the surrogate: score every pool proposal with this zero-cost proxy in the model probe and use the scores as the surrogate's evidence (their seconds are reported); auto: the proxy measured to help on the space (NAS-Bench-201: synflow; layers, code mode, space files: none); off: no proxy")
    priors: list[str] = Field(default_factory=list, description="portfolio with the surrogate: earlier runs (ids, or 'auto' for every run over the same space in this history) whose results warm-start the surrogate; empty: no other run's data")
    directions: list[str] = Field(default_factory=list, description="the user's directions, shown to the LLM in every prompt (e.g. 'prefer 3x3 convolutions')")
    sandbox: Literal["auto", "bwrap", "unshare", "none"] = Field(default="auto", description="what isolates training jobs: auto (the strongest layer here), bwrap, unshare, or none (process limits only; code mode then needs --unsafe)")
    unsafe: bool = Field(default=False, description="run code-mode candidates even where no sandbox layer can cut the network (the --unsafe flag only; recorded on the run)")


    @field_validator("proxy_evidence", mode="before")
    @classmethod
    def _none_is_off(cls, value: Any) -> Any:
        """``proxy_evidence=None`` (the Python API's "no proxy" before "auto" became the default) means off."""
        return "off" if value is None else value

    @field_serializer("openai_base_url")
    def _stored_url(self, url: str | None) -> str | None:
        """What the run's config, `agent doctor` and --json show: without credentials."""
        return None if url is None else public_url(url)

    def worker_count(self) -> int:
        """Candidates trained at once on this machine (the local pools): the setting, else 1."""
        return self.workers or 1

    def proposer_name(self) -> str:
        """The proposer a search uses: the one set, else the portfolio (with LLM operators when an LLM is set)."""
        return self.proposer or "portfolio"


FIELDS = tuple(Settings.model_fields)
# Environment names the wider ecosystem uses, read when AGENT_<NAME> is not set.
ENV_ALIASES = {"openai_api_key": "OPENAI_API_KEY", "openai_base_url": "OPENAI_BASE_URL"}
LIST_FIELDS = {"directions", "rungs", "objectives", "proxies", "tables", "priors"}  # from the environment: JSON lists or comma-separated
BOOL_FIELDS = {"unsafe"}  # the one on/off setting, and it comes only from a flag
PATH_FIELDS = {"home", "benchmark_dir", "signal_table", "final_table", "data_dir", "model_cache", "space_file"}
PATH_LIST_FIELDS = {"tables"}


class ResolvedSettings(BaseModel):
    settings: Settings
    sources: dict[str, str]  # setting -> "flag", "env AGENT_X", "agent.toml (path)", "default"


def _check_keys(values: Mapping[str, Any], source: str) -> None:
    for key in values:
        if key not in FIELDS:
            raise ConfigError(
                f"{source}: unknown setting {key!r}{did_you_mean(key, FIELDS)}",
                hint="known settings: " + ", ".join(FIELDS),
            )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the file or remove it") from None
    _check_keys(data, str(path))
    for key in PATH_FIELDS & data.keys():
        if isinstance(data[key], str):
            data[key] = str((path.parent / Path(data[key]).expanduser()))
    for key in PATH_LIST_FIELDS & data.keys():
        if isinstance(data[key], list):
            data[key] = [str(path.parent / Path(v).expanduser()) if isinstance(v, str) else v for v in data[key]]
    return data


def _validate_one(key: str, value: Any, source: str) -> Any:
    if isinstance(value, bool) and key not in BOOL_FIELDS:  # TOML true/false: pydantic would take it as 1/0
        raise ConfigError(
            f"{source}: bad value {value!r} for {key}: expected {Settings.model_fields[key].annotation}, not a boolean",
            hint=f"set {key} to a valid value ({Settings.model_fields[key].description or 'see docs/configuration.md'})",
        )
    try:
        Settings.model_validate({key: value})
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise ConfigError(
            f"{source}: bad value {value!r} for {key}: {msg}",
            hint=f"set {key} to a valid value ({Settings.model_fields[key].description or 'see docs/configuration.md'})",
        ) from None
    return value


def load_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ResolvedSettings:
    """Merge the four sources; ``flags`` holds only what the user gave (None means unset)."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    _check_keys(flags, "arguments")

    env_names = {k: ENV_PREFIX + k.upper() for k in FIELDS}
    for key, alias in ENV_ALIASES.items():
        if not env.get(env_names[key]) and env.get(alias):
            env_names[key] = alias
    env_values: dict[str, Any] = {k: env[name] for k, name in env_names.items() if env.get(name)}
    for key in LIST_FIELDS & env_values.keys():  # a JSON list; else one direction, or comma-separated items
        text = env_values[key]
        try:
            if text.lstrip().startswith("["):
                env_values[key] = json.loads(text)
            else:
                env_values[key] = [text] if key == "directions" else [t.strip() for t in text.split(",") if t.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigError(f"env {env_names[key]}: not a JSON list: {exc}",
                              hint='set it to one direction, or a JSON list such as ["a", "b"]' if key == "directions"
                              else 'set it to comma-separated values ("a,b") or a JSON list') from None
    cwd_file = cwd / CONFIG_FILE
    cwd_values = _read_toml(cwd_file) if cwd_file.is_file() else {}
    for values, where in ((env_values, f"env {env_names['unsafe']}"), (cwd_values, str(cwd_file))):
        if "unsafe" in values:
            raise ConfigError(f"{where}: 'unsafe' cannot be set in a file or the environment",
                              hint="pass --unsafe on the command line of the one command that needs it")

    # The home directory decides where the second config file is, so resolve it first.
    home: Any = Settings.model_fields["home"].default
    for values, source in ((cwd_values, f"agent.toml ({cwd_file})"), (env_values, f"env {ENV_PREFIX}HOME"), (flags, "flag")):
        if "home" in values:
            home = _validate_one("home", values["home"], source)
    home_file = cwd / Path(home).expanduser() / CONFIG_FILE
    home_values = {}
    if home_file.is_file() and home_file.resolve() != cwd_file.resolve():
        home_values = _read_toml(home_file)
        if "unsafe" in home_values:
            raise ConfigError(f"{home_file}: 'unsafe' cannot be set in a file or the environment",
                              hint="pass --unsafe on the command line of the one command that needs it")
        if "home" in home_values:
            raise ConfigError(
                f"{home_file}: 'home' cannot be set inside the home directory's own agent.toml",
                hint="set home in ./agent.toml, AGENT_HOME or --home",
            )

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {k: "default" for k in FIELDS}
    layers = [
        (home_values, f"agent.toml ({home_file})"),
        (cwd_values, f"agent.toml ({cwd_file})"),
        (env_values, "environment"),
        (flags, "flag"),
    ]
    for values, source in layers:
        for key, value in values.items():
            label = f"env {env_names[key]}" if source == "environment" else source
            merged[key] = _validate_one(key, value, label)
            sources[key] = label
    settings = Settings.model_validate(merged)
    updates: dict[str, Any] = {k: cwd / Path(getattr(settings, k)).expanduser() for k in PATH_FIELDS
                               if getattr(settings, k) is not None}
    updates |= {k: [cwd / Path(p).expanduser() for p in getattr(settings, k)] for k in PATH_LIST_FIELDS
                if getattr(settings, k) is not None}
    return ResolvedSettings(settings=settings.model_copy(update=updates), sources=sources)
