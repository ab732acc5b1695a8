"""Set up and run one search: settings -> task, space, pool, proposer, run record -> graph.

After the graph stops, the best candidate by validation accuracy gets its final
evaluation on the test split (not counted in the budget): a table lookup for tabular
tasks, a retraining with ``final_seeds`` seeds for training tasks (mean and std).
"""

from __future__ import annotations

import hashlib
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.engine.crash import CrashPoints
from agent.engine.early_stop import EarlyStopMonitor
from agent.engine.halving import HalvingMonitor
from agent.engine.screen import Screen
from agent.engine.graph import SEARCH_GRAPH, initial_state
from agent.engine.proposing import Proposing
from agent.engine.resume import restore_state
from agent.engine.state import Recheck, SearchContext, SearchState
from agent.prompting import HistoryView, Prompts
from agent.proposers import Portfolio, Proposer, make_proposer
from agent.proposers.llm import LLMProposer
from agent.reflection import LLMSpend, Reflector
from agent.store import History
from agent.store.history import interrupted
from agent.store.recorder import Recorder
from agent.summaries import BestCandidate, SearchSummary
from evaluator.errors import UserInputError
from evaluator.measure.latency import LatencySettings
from evaluator.objectives import Constraints, Objectives
from evaluator.measure.probe import ModelProbe, training_batch
from evaluator.early_stop.halving import SuccessiveHalving
from evaluator.pools.base import EvaluationPool, Job, PoolEvent
from evaluator.records import FINAL_STATUSES, Candidate, Evaluation, LLMCall, Purpose, Run, RunStatus, Status
from evaluator.spaces import SearchSpace, get_space
from evaluator.tasks import CURVES_PREFIX, Task, curves_task, is_curves_task, is_training_task, resolve_task, training_task
from sandbox.isolation import Isolation, IsolationUnavailable, check_isolation, describe_isolation

ResultCallback = Callable[[Candidate, Evaluation, SearchState], None]

# How a search measures each candidate's latency before training: shorter than a one-off probe
# (the probe process stays warm between candidates, and the reference network normalises the
# machine's drift), the same settling rule.
SEARCH_LATENCY = dict(throughput_batch=32, warmup_runs=10, warmup_seconds=0.3, round_size=10, min_repeats=30,
                      max_repeats=1000, rel_tol=0.01, min_seconds=1.0, max_seconds=5.0)


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class Setup:
    """What a run evaluates with: built from settings, errors naming the fix."""

    task: Task
    space: SearchSpace
    pool: EvaluationPool
    final_seeds: tuple[int, ...]  # one final evaluation per seed
    warnings: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # resolved data paths etc., stored with the run
    device: str = "cpu"  # where candidates run: the latency probe measures there too
    objectives: tuple[str, ...] | None = None  # the space file's, used when the settings name none
    proxy_batch: tuple[Any, Any] | None = None  # training images and labels the probe scores proxies on


def prepare(settings: Settings, run_id: str, test_inject: dict[str, str] | None = None) -> Setup:
    if settings.space_file is not None:
        return _prepare_declared(settings, run_id, test_inject)
    if settings.tables:
        raise UserInputError(f"--table {' '.join(map(str, settings.tables))} is given without --space-file",
                             hint="pass --space-file FILE: the space file says how a table's rows are keyed and which "
                                  "columns are the signal and the report (docs/spaces.md)")
    if settings.task is None:
        raise UserInputError("no task given", hint="pass --task (for example --task digits); `agent tasks` lists them")
    if is_training_task(settings.task):
        return _prepare_training(settings, run_id, test_inject)
    setup = _prepare_curves(settings) if is_curves_task(settings.task) else _prepare_table(settings)
    if settings.pool == "ray":
        setup.warnings.append(f"--pool ray: task {settings.task} looks its results up in this process (no training); "
                              "the Ray pool is not used")
    return setup


def _prepare_table(settings: Settings) -> Setup:
    from evaluator.pools.tabular import TabularBenchmark, TabularPool

    task = resolve_task(settings.task, benchmark_dir=settings.benchmark_dir,
                        signal_table=settings.signal_table, final_table=settings.final_table)
    space = get_space(settings.space or task.default_space, max_params=settings.max_params, max_flops=settings.max_flops)
    if space.name != task.default_space:
        raise UserInputError(
            f"task {task.name} evaluates {task.default_space} cells from a table; space {space.name!r} cannot be used with it",
            hint=f"drop --space or pass --space {task.default_space}",
        )
    benchmark = TabularBenchmark(task)
    return Setup(task=task, space=space, pool=TabularPool(benchmark), final_seeds=(0,), warnings=benchmark.warnings,
                 config={"signal_table": str(task.signal_table),
                         "final_table": str(task.final_table) if task.final_table else None})


TRAINABLE_SPACES = ("layers", "nb201", "code")


def _prepare_declared(settings: Settings, run_id: str, test_inject: dict[str, str] | None) -> Setup:
    """A space declared in a file: looked up in its tables, or trained through its builder."""
    from evaluator.spaces.declared.file import load_space_file

    if settings.space not in (None, "declared"):
        raise UserInputError(f"--space {settings.space} and --space-file {settings.space_file} both name a space",
                             hint="drop --space: the space file declares the space")
    file = load_space_file(settings.space_file)
    # --task trains; otherwise the lookup, when there are tables to look in; else the builder.
    tables = bool(settings.tables) or (file.lookup is not None and bool(file.lookup.tables))
    train = settings.task is not None or (not tables and file.train is not None)
    if settings.task is not None and settings.tables:
        raise UserInputError(f"--task {settings.task} and --table both given with --space-file",
                             hint="drop --task to look candidates up in the tables, or --table to train them")
    if settings.task is not None and not is_training_task(settings.task):
        raise UserInputError(f"--task {settings.task} with --space-file: a declared space trains on a training task "
                             "(digits, cifar10, file:PATH.npz, folder:DIR) or is looked up in its tables",
                             hint="drop --task to look candidates up in the file's tables, or give a training task")
    if not train:
        return _prepare_lookup(settings, file)
    if file.train is None:
        raise UserInputError(f"{file.path} declares no [train] builder, so it cannot be trained on "
                             f"{settings.task or 'a task'}",
                             hint="add [train] with builder = \"builder.py\" (build_model(choices, input_shape, "
                                  "num_classes)), or drop --task to look candidates up in [lookup]'s tables")
    task = settings.task or file.train.task
    if task is None:
        raise UserInputError(f"{file.path}: which task should its candidates train on?",
                             hint="pass --task (e.g. --task digits), or set task = \"digits\" under [train]")
    if not is_training_task(task):
        raise UserInputError(f"{file.path} [train] task {task!r} is not a training task",
                             hint="use digits, cifar10, file:PATH.npz or folder:DIR")
    setup = _prepare_training(settings.model_copy(update={"task": task}), run_id, test_inject, declared=file)
    setup.objectives = file.objectives
    return setup


def _prepare_lookup(settings: Settings, file: Any) -> Setup:
    from evaluator.pools.lookup import Lookup
    from evaluator.spaces.declared import DeclaredSpace
    from evaluator.spaces.declared.file import ENUMERATE_LIMIT
    from evaluator.pools.tabular import TabularPool
    from evaluator.tasks import lookup_task

    if file.lookup is None:
        raise UserInputError(f"--table is given, but {file.path} has no [lookup] section to say how its rows are keyed "
                             "and which column is the signal",
                             hint="add [lookup] with signal = \"COLUMN\" (and key = \"...\" when a column holds "
                                  "the key), docs/spaces.md")
    limits = [flag for flag, v in (("--max-params", settings.max_params), ("--max-flops", settings.max_flops),
                                   ("--max-latency-ms", settings.max_latency_ms)) if v is not None]
    if limits or settings.screen:
        asked = limits + ([f"--screen {settings.screen}"] if settings.screen else [])
        raise UserInputError(f"{', '.join(asked)} measure networks before training; a lookup has no network",
                             hint="express the limit as a [[constraints]] rule of the space file, or filter the table")
    full = DeclaredSpace(file)
    lookup = Lookup(full, file.lookup, settings.tables)
    held = lookup.combinations()
    allowed = {c for c in held if full.allows(dict(zip(full.names, c)))}
    warnings = list(file.notes)
    if len(allowed) < len(held):
        warnings.append(f"{len(held) - len(allowed)} table row(s) break the constraints of {file.path.name}: never proposed")
    if file.size <= ENUMERATE_LIMIT:
        complete = len(allowed) >= (len(full.valid_combinations()) if file.rules else file.size)
    else:
        complete = len(allowed) >= file.size
    space = full
    if not complete:
        source = ", ".join(t.path.name for t in lookup.tables)
        space = DeclaredSpace(file, restrict=allowed, restrict_source=source)
        warnings.append(f"the tables hold {len(allowed):,} of the {file.size:,} combinations: the search is restricted "
                        "to those")
    objectives = settings.objectives or list(file.objectives or ("accuracy",))
    wanted = {"latency": "latency_ms", "params": "params", "flops": "flops"}
    for name in objectives:
        if name in wanted and wanted[name] not in file.lookup.metrics:
            raise UserInputError(f"objective {name} needs a {wanted[name]} column in the lookup",
                                 hint=f"add metrics = {{ {wanted[name]} = \"COLUMN\" }} under [lookup] of "
                                      f"{file.path.name}, or drop {name} from the objectives")
    task = lookup_task(file.name, file.path, f"{file.name}, looked up: {lookup.describe()}", len(allowed),
                       lookup.fidelity)
    return Setup(task=task, space=space, pool=TabularPool(lookup), final_seeds=(0,), warnings=warnings,
                 objectives=file.objectives,
                 config={"space_file": str(file.path), "space_file_sha256": file.sha256,
                         "tables": [str(t.path) for t in lookup.tables]})


def _prepare_training(settings: Settings, run_id: str, test_inject: dict[str, str] | None,
                      declared: Any = None) -> Setup:
    from evaluator.data import load_dataset
    from evaluator.pools.training import TrainingPool
    from sandbox.process import Limits

    name = settings.space
    if declared is None and name is not None and name not in TRAINABLE_SPACES:
        raise UserInputError(f"space {name!r} cannot be trained on {settings.task}",
                             hint="use --space " + " or --space ".join(TRAINABLE_SPACES))
    dataset = load_dataset(settings.task, cache_dir=settings.home / "data", data_dir=settings.data_dir)
    task = training_task(settings.task, dataset.input_shape, dataset.num_classes, dataset.source)
    extra: dict[str, Any] = {}
    if declared is not None:
        from evaluator.spaces.declared import DeclaredSpace

        space: SearchSpace = DeclaredSpace(declared, input_shape=dataset.input_shape, num_classes=dataset.num_classes)
        builder = declared.train.builder.read_bytes()
        try:
            builder_source = builder.decode("utf-8")
        except UnicodeDecodeError:
            raise UserInputError(f"builder {declared.train.builder} is not UTF-8 text",
                                 hint="save the builder as a UTF-8 Python file") from None
        extra = {"space_file": str(declared.path), "space_file_sha256": declared.sha256,
                 "builder": str(declared.train.builder), "builder_sha256": hashlib.sha256(builder).hexdigest()}
    else:
        space = get_space(name or task.default_space, input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                          max_params=settings.max_params, max_flops=settings.max_flops, task=settings.task)
        builder_source = None
    epochs = settings.epochs or int(task.fidelity)
    limits = Limits(wall_seconds=settings.timeout, memory_mb=settings.memory_mb)
    if settings.pool == "ray":
        pool, device, ray = _ray_pool(settings, run_id, dataset, space.name, epochs, limits, test_inject,
                                      builder_source)
        extra |= ray
        isolation = pool.isolation
    else:
        device = _device(settings.device)
        isolation = job_isolation(settings, dataset.files, device, code=space.name == "code")
        pool = TrainingPool(
            dataset, space.name, workdir=settings.home / "work" / run_id, epochs=epochs,
            capacity=settings.worker_count(), limits=limits,
            device=device, test_inject=test_inject, proxies=tuple(settings.proxies), isolation=isolation,
            weights_dir=settings.home / "weights" / run_id, warm=settings.warm_workers, builder_source=builder_source,
        )
    return Setup(task=task, space=space, pool=pool, final_seeds=tuple(range(settings.final_seeds)),
                 warnings=list(getattr(pool, "notes", [])),
                 config={"data": dataset.source, "epochs": pool.epochs, "device": device,
                         "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes,
                         "sandbox": describe_isolation(isolation), "unsafe": settings.unsafe,
                         "workers": pool.capacity, **extra},
                 device=device.split(":")[0],
                 proxy_batch=training_batch(dataset.x_train, dataset.y_train, dataset.x_scale, seed=settings.seed)
                 if settings.screen else None)


def _ray_pool(settings: Settings, run_id: str, dataset: Any, space: str, epochs: int, limits: Any,
              test_inject: dict[str, str] | None, builder_source: str | None = None
              ) -> tuple[EvaluationPool, str, dict[str, Any]]:
    """The Ray pool: join (or start) the cluster, size one candidate's resources, start the actors.
    Returns the pool, the device candidates train on, and what the run records about the cluster."""
    from evaluator.pools.ray_cluster import RayUnavailable, connect
    from evaluator.pools.ray import RayPool, Resources

    try:
        cluster = connect(settings.ray_address)
    except RayUnavailable as exc:
        raise UserInputError(str(exc), hint="docs/ray.md shows how to run on a Ray cluster") from None
    try:
        cluster_gpus = cluster.resources.get("GPU", 0.0)
        gpus = settings.ray_gpus
        if gpus is None:
            gpus = 1.0 if cluster_gpus and settings.device != "cpu" else 0.0
        if settings.device == "cuda" and not gpus:
            raise UserInputError(f"--device cuda, but {cluster.describe()} and each candidate asks for no GPU",
                                 hint="pass --ray-gpus 1 (or 0.5 to share a GPU), or --device cpu")
        if settings.device == "cpu" and gpus:
            raise UserInputError(f"--device cpu contradicts --ray-gpus {gpus:g}", hint="drop one of them")
        device = "cuda" if gpus else "cpu"
        resources = Resources(cpus=settings.ray_cpus, gpus=gpus, memory_mb=settings.memory_mb)
        if resources.slots(cluster.resources) < 1:
            raise UserInputError(f"no candidate fits {cluster.describe()}: each asks for {resources.describe()}",
                                 hint="lower --ray-cpus, --ray-gpus or --memory-mb, or add nodes (docs/ray.md)")
        isolation = job_isolation(settings, dataset.files, device, code=space == "code")
        pool = RayPool(dataset, space, cluster=cluster, run_id=run_id, workdir=settings.home / "work" / run_id,
                       epochs=epochs, resources=resources, workers=settings.workers, limits=limits,
                       threads=max(1, int(settings.ray_cpus)), proxies=tuple(settings.proxies), isolation=isolation,
                       weights_dir=settings.home / "weights" / run_id, retries=settings.ray_retries,
                       pool_options={"warm": settings.warm_workers} | ({"test_inject": test_inject} if test_inject else {})
                       | ({"builder_source": builder_source} if builder_source is not None else {}),
                       owns_cluster=True)
    except BaseException:
        cluster.close()
        raise
    pool.isolation = isolation
    return pool, device, {"pool": "ray", "ray": {"address": cluster.address, "nodes": cluster.nodes,
                                                   "per_candidate": resources.describe(), "workers": pool.capacity}}


def job_isolation(settings: Settings, data_files: tuple[Path, ...], device: str, *, code: bool) -> Isolation:
    """The sandbox every training job runs in: no network; the system and Python read-only (the
    pool adds the worker's own code); the job's scratch folder the only writable place; the history home,
    the data set's source files and the user's home invisible. Code-mode candidates (hostile
    code) refuse to start without a layer that cuts the network unless ``--unsafe`` is given;
    that check happens here, before anything is recorded."""
    hidden = [settings.home.resolve(), *data_files]
    if settings.data_dir is not None:
        hidden.append(settings.data_dir.resolve())
    isolation = Isolation(
        network=False,
        hidden=tuple(hidden),
        scratch_quota_mb=settings.disk_mb,
        devices=tuple(str(d) for d in sorted(Path("/dev").glob("nvidia*"))) if device.startswith("cuda") else (),
        backend=settings.sandbox,
        require_network_isolation=code and not settings.unsafe,
    )
    try:
        check_isolation(isolation)
    except IsolationUnavailable as exc:
        raise UserInputError(f"the sandbox cannot run these jobs as asked: {exc}",
                             hint="install bubblewrap (apt-get install bubblewrap; `agent doctor` shows the sandbox "
                                  "layers), or pass --unsafe to run code-mode candidates without network isolation "
                                  "(recorded on the run)") from None
    return isolation


def _prepare_curves(settings: Settings) -> Setup:
    from evaluator.pools.replay import CurvePool
    from evaluator.tables.curves import load_curve_table
    from evaluator.spaces.nb201 import Nb201Space

    path = Path(settings.task[len(CURVES_PREFIX):]).expanduser()
    table = load_curve_table(path)
    task = curves_task(settings.task, path, len(table.archs), table.epochs)
    if (settings.space or "nb201") != "nb201":
        raise UserInputError(f"task {task.name} replays NAS-Bench-201 cells; space {settings.space!r} cannot be used with it",
                             hint="drop --space or pass --space nb201")
    space = Nb201Space(cells=frozenset(table.archs), cells_source=path.name, max_params=settings.max_params,
                       max_flops=settings.max_flops)
    return Setup(task=task, space=space, pool=CurvePool(table, capacity=settings.worker_count()), final_seeds=(0,),
                 config={"curves": str(path.resolve()), "epochs": table.epochs})


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


LLM_PROPOSERS = ("llm", "portfolio")


@dataclass
class LLMParts:
    """What an LLM-driven search adds: the proposer's model, its reflection, and the spend."""

    proposer: LLMProposer
    reflector: Reflector | None
    spend: LLMSpend


def _proposer_from(settings: Settings, space: SearchSpace, task: Task, run_id: str, recorder: Recorder,
                   objectives: Objectives, constraints: Constraints) -> tuple[Proposer, LLMParts | None]:
    name = settings.proposer_name()
    if name in LLM_PROPOSERS:
        # In the portfolio a repeat gets one repair, then a mutation: other operators are cheaper than LLM retries.
        parts = _llm_parts(settings, space, task, run_id, recorder, objectives, constraints,
                           max_repairs=1 if name == "portfolio" else 2)
        if name == "llm":
            return parts.proposer, parts
        return Portfolio(space, settings.seed, llm=parts.proposer, cost=settings.portfolio_cost,
                         llm_after=settings.llm_after), parts
    if name != "evolution":
        return make_proposer(name, space, settings.seed), None
    if settings.tournament > settings.population:
        raise UserInputError(
            f"tournament ({settings.tournament}) is larger than population ({settings.population})",
            hint="choose a tournament size between 1 and the population size (--tournament, --population)",
        )
    return make_proposer("evolution", space, settings.seed, population=settings.population,
                         tournament=settings.tournament), None


def _llm_parts(settings: Settings, space: SearchSpace, task: Task, run_id: str, recorder: Recorder,
               objectives: Objectives, limits: Constraints, *, max_repairs: int) -> LLMParts:
    from agent.llm import make_backend

    llm_settings = settings if settings.llm else settings.model_copy(update={"llm": "local"})
    if settings.max_llm_cost is not None and llm_settings.llm == "openai" and (
            settings.llm_price_in is None or settings.llm_price_out is None):
        raise UserInputError(f"--max-llm-cost {settings.max_llm_cost} needs the model's prices to count dollars",
                             hint="set llm_price_in and llm_price_out (dollars per million tokens) in agent.toml "
                                  "or AGENT_LLM_PRICE_IN / AGENT_LLM_PRICE_OUT")
    backend = make_backend(llm_settings)
    user_prompts = settings.home / "prompts"
    prompts = Prompts(user_prompts if user_prompts.is_dir() else None)
    spend = LLMSpend()

    def record(calls: list[LLMCall]) -> None:
        recorder.add_llm_calls(calls)
        spend.add(calls)

    def view(evaluations: int, budget: int, seed: int) -> HistoryView:
        if isinstance(recorder, History):  # directions given in a chat session since the last prompt
            context["directions"] = list(dict.fromkeys([*settings.directions, *recorder.directions(run_id)]))
        rows = recorder.prompt_history(run_id, seed=seed)
        insights = [r["text"] for r in recorder.insights(run_id)]
        return HistoryView.from_rows(rows, space.summary, evaluations=evaluations, budget=budget, insights=insights,
                                     show=shown)

    # Rows state the other objectives' values and whatever a limit is on.
    shown = tuple(dict.fromkeys([m for m in objectives.metrics if m != "val_accuracy"]
                                + ["latency_ms"] * (limits.max_latency_ms is not None)
                                + ["params"] * (limits.max_params is not None) + ["flops"] * (limits.max_flops is not None)))
    constraints = [f"{c} (measured before training; a candidate over the limit is rejected untrained)"
                   for c in limits.describe()]
    if is_training_task(task.name):
        constraints.append(f"each candidate trains in a worker limited to {settings.timeout:g} s and "
                           f"{settings.memory_mb} MB; one that exceeds either fails")
    if space.name == "code":
        constraints.append("the model file runs in a sandbox with no network and no files beyond its own folder: "
                           "use torch only, no downloads, no file or process access")
    goals = objectives.describe()
    if objectives.multi:
        goals[-1] += " (several objectives: propose trade-offs that no evaluated candidate beats in every one)"
    context = {"task": task.name, "task_description": task.description, "constraints": constraints,
               "objectives": goals, "directions": list(settings.directions)}
    # A code proposal (edits of a file shown in the prompt) needs a longer prompt and reply than a
    # spec, and each repair resends the file: one repair, then the fallback mutation of the file.
    lengths = {}
    if space.name == "code":
        lengths, max_repairs = dict(max_tokens=1536, token_budget=5000), min(max_repairs, 1)
    proposer = LLMProposer(space, settings.seed, backend=backend, run_id=run_id, prompts=prompts, record=record,
                           history=lambda c: view(c.evaluations, c.budget, settings.seed + c.evaluations),
                           task=context, max_repairs=max_repairs, **lengths)
    reflector = None
    if settings.reflect_every:
        reflector = Reflector(backend=backend, recorder=recorder, record=record, spend=spend, run_id=run_id, prompts=prompts,
                              history=lambda e, b: view(e, b, settings.seed + e), task=context,
                              space_name=space.label, space_description=space.describe(),
                              every=settings.reflect_every, seed=settings.seed)
    return LLMParts(proposer=proposer, reflector=reflector, spend=spend)


def run_search(
    settings: Settings,
    *,
    resume: str | None = None,
    until: datetime | None = None,
    recorder: Recorder | None = None,
    proposer: Proposer | None = None,
    on_start: Callable[[Run, list[str]], None] | None = None,
    on_result: ResultCallback | None = None,
    on_event: Callable[[PoolEvent], None] | None = None,
    test_inject: dict[str, str] | None = None,
) -> SearchSummary:
    """Run a search as configured; record it in ``recorder`` (default: the home's history).

    ``resume`` continues a run of the history instead of starting one (``settings`` from
    :func:`resume_settings`): what it recorded is replayed into the search state, candidates
    that were in flight are evaluated again, and it goes on to its budget. ``until`` is an
    absolute wall-clock deadline (UTC); without it ``settings.minutes`` counts from now, and a
    resumed run keeps the deadline it recorded.
    ``proposer`` replaces the one named in settings (a proposer of your own, for example).
    ``on_event`` sees every pool event, the final retraining's included (live progress).
    ``test_inject`` maps candidate-id suffixes (``"c0003"``) to code a worker runs where
    candidate code would run: a test-only path for injecting faults.
    """
    started = time.monotonic()
    crash_points = CrashPoints.from_env()
    if resume is not None:
        if recorder is not None and not isinstance(recorder, History):
            raise ValueError("only a run in a History can be resumed")
        recorder = recorder or History(settings.home, lock_timeout=settings.lock_timeout)
        run_id = recorder.resolve_run_id(resume)
    else:
        run_id = new_run_id()
    setup = prepare(settings, run_id, test_inject)
    try:
        return _run(settings, setup, run_id, started, recorder, proposer, on_start, on_result, on_event,
                    resume=resume is not None, until=until, crash_points=crash_points)
    finally:
        setup.pool.close()


# What may change when a run is resumed: its limits and how its workers run. Everything else
# (task, space, proposer, seed, objectives, ...) is the run's own and comes from its record.
RESUME_OVERRIDES = ("budget", "minutes", "max_llm_cost", "max_device_seconds", "workers", "warm_workers", "pool",
                    "ray_address", "ray_cpus", "ray_gpus", "ray_retries", "timeout", "memory_mb", "disk_mb", "device",
                    "reflect_every", "directions", "recheck_every", "recheck_top", "recheck_seeds")
# Where this process runs, never taken from the record: the home, secrets, endpoints, caches.
RESUME_LOCAL = ("home", "openai_api_key", "openai_base_url", "model_cache", "llm_timeout", "lock_timeout",
                "llm_price_in", "llm_price_out")


def resume_settings(current: Settings, given: dict[str, Any], stored: dict[str, Any]) -> Settings:
    """The settings a resumed run continues with: its recorded ones, with the limits given now
    (``given``: the flags of this command) on top. A flag that would change what the run is
    (another task, seed, proposer...) is refused rather than silently ignored."""
    from agent.config import FIELDS

    values = {k: stored[k] for k in FIELDS if k in stored and k not in RESUME_LOCAL}
    for key, value in given.items():
        if value is None or key in RESUME_LOCAL:
            continue
        if key in RESUME_OVERRIDES:
            values[key] = value
            continue
        recorded = stored.get(key)
        if _normal(getattr(current, key)) != _normal(recorded):
            raise UserInputError(f"--{key.replace('_', '-')} {value} differs from the run's own ({recorded}); "
                                 "a resumed run keeps its task, space, proposer, seed and search settings",
                                 hint="drop the flag to continue the run as it was, or start a new run; on resume only "
                                      + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES) + " may change")
    values.pop("unsafe", None)  # a flag of one command only, never restored from a record
    # The run config also holds what the setup resolved under two of these names: the device
    # it ran on ("cuda:0") and the sandbox's description. The setting is what it came from.
    if isinstance(values.get("device"), str):
        values["device"] = values["device"].split(":")[0]
    if values.get("sandbox") not in ("auto", "bwrap", "unshare", "none"):
        values.pop("sandbox", None)
    if stored.get("unsafe") and not given.get("unsafe"):
        raise UserInputError("the run was started with --unsafe (code-mode candidates without network isolation)",
                             hint="pass --unsafe again to resume it that way")
    local = {k: getattr(current, k) for k in RESUME_LOCAL}
    return Settings.model_validate(values | {"unsafe": bool(given.get("unsafe"))}).model_copy(update=local)


def _normal(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _deadline(settings: Settings, until: datetime | None, stored: dict[str, Any] | None) -> datetime | None:
    """The run's wall-clock deadline (UTC): given, or --minutes from now, or the one it recorded."""
    if until is not None:
        return until.astimezone(timezone.utc)
    if stored is not None and stored.get("deadline") and (settings.minutes is None
                                                          or settings.minutes == stored.get("minutes")):
        return datetime.fromisoformat(stored["deadline"])
    if settings.minutes is not None:
        return datetime.now(timezone.utc) + timedelta(minutes=settings.minutes)
    return None


def _run(settings, setup: Setup, run_id, started, recorder, proposer, on_start, on_result, on_event, *,
         resume: bool = False, until: datetime | None = None, crash_points: CrashPoints | None = None) -> SearchSummary:
    task, space = setup.task, setup.space
    budget = settings.budget or task.default_budget
    if recorder is None:
        recorder = History(settings.home, lock_timeout=settings.lock_timeout)
    stored = recorder.get_run(run_id) if resume else None
    if stored is not None:
        _same_files(stored.get("config") or {}, setup.config)
    deadline = _deadline(settings, until, stored["config"] if stored else None)
    objectives = Objectives.parse(settings.objectives if settings.objectives is not None else setup.objectives)
    constraints = Constraints(max_latency_ms=settings.max_latency_ms, max_params=settings.max_params,
                              max_flops=settings.max_flops)
    resumes = recorder.count_events(run_id, "run_resumed") + 1 if resume else 0
    # A resumed run's proposer starts from another seed: replaying the same draws would only
    # propose what the run already has.
    proposer_settings = settings.model_copy(update={"seed": settings.seed + 7919 * resumes}) if resumes else settings
    llm = None
    if proposer is None:
        proposer, llm = _proposer_from(proposer_settings, space, task, run_id, recorder, objectives, constraints)
    proposer.objectives = objectives
    early_stop, halving = _early_stop(settings, setup, run_id)  # refuses a table task before anything is recorded
    screen = _screen(settings, setup, objectives, constraints)
    config = settings.model_dump(mode="json") | setup.config | {"deadline": deadline.isoformat() if deadline else None}
    if stored is not None:
        claim = recorder.claim_run(run_id, budget=budget, config_update=config)
        run = Run(run_id=run_id, task=stored["task"], space=stored["space"], proposer=stored["proposer"],
                  seed=stored["seed"], budget=budget, config=stored["config"] | config,
                  created=stored["created"].replace(tzinfo=timezone.utc))
        warnings = setup.warnings + [f"resumed (resume {claim['resumes']}, the run was {claim['previous_status']}); "
                                     f"{len(claim['requeued'])} candidate(s) in flight then are evaluated again"]
    else:
        run = Run(run_id=run_id, task=task.name, space=space.name, proposer=proposer.name, seed=settings.seed,
                  budget=budget, config=config)
        recorder.create_run(run)
        warnings = setup.warnings
    if on_start is not None:
        on_start(run, warnings)
    # Proposals are made beside the pool's jobs when it runs them in the background (training,
    # Ray), up to a pool's worth ahead; in turn with the evaluations where it computes them (tables).
    proposing = Proposing(proposer, background=setup.pool.background, lookahead=setup.pool.capacity)
    ctx = SearchContext(
        run=run, space=space, proposer=proposer, pool=setup.pool, recorder=recorder, budget=budget,
        deadline=None if deadline is None else time.monotonic() + (deadline - datetime.now(timezone.utc)).total_seconds(),
        max_attempts=20 * budget + 100, on_result=on_result, on_event=on_event,
        reflector=llm.reflector if llm else None, llm_spend=llm.spend if llm else None,
        max_llm_cost=settings.max_llm_cost if llm else None,
        epochs=setup.pool.epochs,
        early_stop=early_stop, halving=halving, screen=screen, objectives=objectives,
        max_device_seconds=settings.max_device_seconds, crash_points=crash_points,
        recheck=Recheck(settings.recheck_every, settings.recheck_top, settings.recheck_seeds)
        if settings.recheck_every and setup.pool.seeded else None,
        proposing=proposing,
    )
    if screen is not None and screen.proxy:
        ctx.max_attempts *= screen.factor
    try:
        state = restore_state(ctx, recorder) if stored is not None else initial_state()
        ctx.max_attempts += state["attempts"]
        final = SEARCH_GRAPH.invoke(state, {"recursion_limit": 20 * ctx.max_attempts + 100}, context=ctx)
        proposing.close()  # a proposal still being made (a limit stopped the search) is dropped
        best = _final_report(ctx, final, setup.final_seeds)
        summary = _summary(ctx, final, best, started, warnings=warnings,
                           home=str(settings.home) if isinstance(recorder, History) else None)
        recorder.finish_run(run.run_id, RunStatus.DONE, summary.to_json())
        return summary
    except KeyboardInterrupt:
        recorder.finish_run(run.run_id, RunStatus.INTERRUPTED, None)
        raise
    except BaseException as exc:
        if not interrupted(exc):
            recorder.finish_run(run.run_id, RunStatus.FAILED, None)
            raise
        # a signal DuckDB noticed first comes back as its "Query interrupted": a stop, not a failure
        recorder.finish_run(run.run_id, RunStatus.INTERRUPTED, None)
        raise KeyboardInterrupt() from exc
    finally:
        proposing.close(timeout=0)  # stopped or failed: an LLM call under way is abandoned (a daemon thread)
        if screen is not None:
            screen.probe.close()


def _same_files(recorded: dict[str, Any], now: dict[str, Any]) -> None:
    """A resumed run reads the space file (and builder) it started with: refuse one that changed."""
    for key, label in (("space_file_sha256", "space file"), ("builder_sha256", "builder")):
        if recorded.get(key) and now.get(key) and recorded[key] != now[key]:
            path = now.get("space_file" if key == "space_file_sha256" else "builder")
            raise UserInputError(f"the {label} {path} changed since the run started (SHA-256 {recorded[key][:12]}... "
                                 f"then, {now[key][:12]}... now): its recorded candidates may no longer fit it",
                                 hint=f"put the {label} back as it was to resume, or start a new run with the new one")


def _early_stop(settings: Settings, setup: Setup, run_id: str) -> tuple[EarlyStopMonitor | None, HalvingMonitor | None]:
    """The forecast rule and / or successive halving, as ``--early-stop`` asks."""
    mode = settings.early_stop
    if mode == "off":
        if settings.rungs is not None:
            raise UserInputError(f"--rungs {','.join(map(str, settings.rungs))} is given but early stopping is off",
                                 hint="add --early-stop asha (or both), or drop --rungs")
        return None, None
    epochs = setup.pool.epochs
    if epochs is None:
        raise UserInputError(f"--early-stop {mode} needs a task that trains its candidates; "
                             f"{setup.task.name} looks results up in a table (one number per candidate, no curve)",
                             hint="drop --early-stop, or search a training task such as --task digits")
    forecast = halving = None
    if mode in ("forecast", "both"):
        forecast = EarlyStopMonitor(run_id, epochs, threshold=settings.early_stop_threshold,
                                    audit_fraction=settings.audit_fraction, seed=settings.seed)
    if mode in ("asha", "both"):
        rungs = tuple(settings.rungs) if settings.rungs is not None else None
        halving = HalvingMonitor(run_id, setup.pool, SuccessiveHalving(epochs, rungs, settings.reduction_factor))
    return forecast, halving


def _screen(settings: Settings, setup: Setup, objectives: Objectives, constraints: Constraints) -> Screen | None:
    """The pre-training measurements a run needs, or None when it needs none."""
    latency = "latency" in objectives.names or constraints.max_latency_ms is not None
    if not (objectives.multi or constraints.any or settings.screen):
        return None
    if setup.space.name == "declared" and setup.task.kind == "tabular":
        return None  # the lookup's tables give the objectives' values (limits were refused by _prepare_lookup)
    if setup.space.name in ("code", "declared"):
        asked = [flag for flag, on in (("--objectives " + ",".join(objectives.names), objectives.multi),
                                       ("--max-latency-ms/--max-params/--max-flops", constraints.any),
                                       (f"--screen {settings.screen}", bool(settings.screen))) if on]
        raise UserInputError(f"{' and '.join(asked)} measure candidates before training in a trusted process, which "
                             "must never import code-mode candidates (hostile code) or a space file's builder",
                             hint="drop these flags for --space code and --space-file; the parameter count of each "
                                  "trained candidate is still recorded (its `params` metric)")
    device = setup.device
    probe = ModelProbe(device=device, threads=1, proxies=(settings.screen,) if settings.screen else (),
                       batch=setup.proxy_batch, timeout=settings.timeout,
                       latency=LatencySettings(device=device, threads=1, **SEARCH_LATENCY) if latency else None)
    return Screen(probe=probe, space=setup.space.name, input_shape=tuple(setup.task.input_shape),
                  num_classes=setup.task.num_classes, constraints=constraints, latency=latency,
                  proxy=settings.screen, factor=settings.screen_factor)


def final_evaluations(pool: EvaluationPool, candidate_id: str, spec: dict, seeds: tuple[int, ...],
                      on_event: Callable[[PoolEvent], None] | None = None) -> list[Evaluation]:
    """Evaluate one candidate on the test split once per seed, as many at once as the pool allows."""
    pending, done = list(seeds), []
    while len(done) < len(seeds):
        while pending and pool.free_slots() > 0:
            pool.submit(Job(candidate_id=candidate_id, spec=spec, purpose=Purpose.FINAL, seed=pending.pop(0)))
        for event in pool.events(timeout=None):
            if on_event is not None:
                on_event(event)
            if event.kind == "finished" and event.evaluation is not None and event.evaluation.purpose is Purpose.FINAL:
                done.append(event.evaluation)
    return done


def _final_report(ctx: SearchContext, state: SearchState, seeds: tuple[int, ...]) -> BestCandidate | None:
    """Evaluate the best candidate by validation on the test split (not counted in the budget)."""
    if not state["top"]:
        return None
    best = _leader(state)
    if ctx.crash_points is not None:
        ctx.crash_points.reached("final", "before")
    # A resumed run that had already recorded its final report (it stopped right after) keeps it.
    evaluations = ctx.recorder.final_evaluations(best["candidate_id"]) if isinstance(ctx.recorder, History) else []
    if len(evaluations) < len(seeds):
        evaluations = final_evaluations(ctx.pool, best["candidate_id"], best["spec"], seeds, ctx.on_event)
        ctx.recorder.add_evaluations(ctx.run.run_id, evaluations, update_status=False)
    if ctx.crash_points is not None:
        ctx.crash_points.reached("final", "after")
    ok = [e for e in evaluations if e.status is Status.OK and e.test_accuracy is not None]
    accs = [e.test_accuracy for e in ok]
    trained = len(seeds) > 1 or any("seed" in e.metrics for e in evaluations)
    if ok:
        source = ok[0].source
        if trained:
            source = (f"test split, mean of {len(ok)} retraining(s) from scratch (seeds "
                      f"{', '.join(str(e.metrics['seed']) for e in ok)}), {source}")
        if len(ok) < len(evaluations):
            source += f"; {len(evaluations) - len(ok)} of {len(evaluations)} final runs failed: {_first_error(evaluations)}"
    else:
        source = _first_error(evaluations)
    checked = _validation_seeds(state, best)
    return BestCandidate(
        candidate_id=best["candidate_id"], spec=best["spec"], val_accuracy=best["val_accuracy"],
        val_accuracy_mean=statistics.fmean(checked) if len(checked) > 1 else None,
        val_seeds=len(checked) if len(checked) > 1 else None,
        test_accuracy=statistics.fmean(accs) if accs else None, test_source=source,
        test_accuracy_std=(statistics.stdev(accs) if len(accs) > 1 else 0.0) if trained and accs else None,
        seeds=[int(e.metrics["seed"]) for e in ok] if trained else None,
        **ctx.space.extra_fields(best["spec"]),
    )


def _validation_seeds(state: SearchState, top: dict) -> list[float]:
    """A top candidate's validation accuracies: its search evaluation and every ok recheck."""
    return [top["val_accuracy"], *(v for v in state.get("rechecks", {}).get(top["candidate_id"], []) if v is not None)]


def _leader(state: SearchState) -> dict:
    """The candidate the final report retrains: the best by validation accuracy, averaged over
    the seeds it has when rechecks trained some leaders again (a single run is near the noise floor)."""
    if not state.get("rechecks"):
        return state["top"][0]
    return max(state["top"], key=lambda t: (statistics.fmean(_validation_seeds(state, t)), -t["seq"]))


def _first_error(evaluations: list[Evaluation]) -> str:
    return next((e.error for e in evaluations if e.error),
                evaluations[0].source if evaluations and evaluations[0].source else "no test accuracy")


def _summary(ctx: SearchContext, state: SearchState, best: BestCandidate | None, started: float, *,
             home: str | None, warnings: list[str]) -> SearchSummary:
    counts = {s.value: state["counts"].get(s.value, 0) for s in FINAL_STATUSES}
    top = [{"candidate_id": t["candidate_id"], "val_accuracy": t["val_accuracy"], **ctx.space.extra_fields(t["spec"])}
           for t in state["top"]]
    return SearchSummary(
        run_id=ctx.run.run_id, status=RunStatus.DONE.value, task=ctx.run.task, space=ctx.space.name,
        proposer=ctx.proposer.name, seed=ctx.run.seed, budget=ctx.budget, evaluations=state["evaluations"],
        counts=counts, duplicates_skipped=state["duplicates"], proposals=state["attempts"],
        stop_reason=state["stop_reason"], best=best, top=top, wall_seconds=round(time.monotonic() - started, 3),
        home=home, warnings=warnings,
        llm=ctx.recorder.llm_totals(ctx.run.run_id) if ctx.llm_spend is not None else None,
        operators=ctx.proposer.stats(),
        epochs_trained=state.get("epochs_trained") if ctx.epochs is not None else None,
        epochs_saved=state.get("epochs_saved") if ctx.epochs is not None else None,
        early_stop=ctx.early_stop.report() if ctx.early_stop is not None else None,
        asha=ctx.halving.report() if ctx.halving is not None else None,
        objectives=list(ctx.objectives.names),
        pareto=[{"candidate_id": m["candidate_id"], **{k: v for k, v in m.items() if k in _OBJECTIVE_KEYS},
                 **ctx.space.extra_fields(m["spec"])}
                for m in sorted(state.get("front", []), key=lambda m: (-m["val_accuracy"], m["seq"]))]
        if ctx.objectives.multi else None,
        pretraining=ctx.screen.report() if ctx.screen is not None else None,
        proxies=_proxy_quality(state.get("proxy_scores", [])),
        rechecks=_recheck_report(state),
    )


def _recheck_report(state: SearchState) -> dict[str, Any] | None:
    """Each rechecked candidate's recheck accuracies, and its mean with the search's (while it is in the top)."""
    top = {t["candidate_id"]: t for t in state["top"]}
    return {cid: {"val_accuracies": vals, "val_accuracy_mean":
                  statistics.fmean(_validation_seeds(state, top[cid])) if cid in top else None}
            for cid, vals in state.get("rechecks", {}).items()} or None


_OBJECTIVE_KEYS = ("val_accuracy", "latency_ms", "params", "flops")
PROXY_MIN_CANDIDATES = 5  # fewer ok candidates give no rank correlation worth printing


def _proxy_quality(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How well each zero-cost proxy the workers scored ranked this run's ok candidates: the
    Spearman correlation with their validation accuracy (undefined scores rank last)."""
    if not rows:
        return None
    from evaluator.measure.proxies import PROXY_NAMES, spearman

    out = {}
    for name in PROXY_NAMES:
        key = f"proxy_{name}"
        if not any(key in r for r in rows):
            continue
        scored = [r for r in rows if key in r]
        floor = min((r[key] for r in scored if r[key] is not None), default=0.0) - 1.0
        values = [r[key] if r[key] is not None else floor for r in scored]
        vals = [r["val_accuracy"] for r in scored]
        enough = len(scored) >= PROXY_MIN_CANDIDATES and len(set(vals)) > 1 and len(set(values)) > 1
        rho = spearman(values, vals) if enough else None
        out[name] = {"spearman_val_accuracy": None if rho is None else round(rho, 3), "candidates": len(scored),
                     "undefined": sum(r[key] is None for r in scored)}
    return out or None


def evaluate_one(settings: Settings, spec: object, *, final: bool = False) -> dict:
    """Evaluate one user-given spec exactly as a search would, and record it as a run of one.

    The spec is validated first: bad input raises SpecError and nothing is recorded. With
    ``final`` the test split is read too (a final evaluation, as for a search's choice).
    """
    run_id = new_run_id()
    setup = prepare(settings, run_id)
    try:
        spec = setup.space.validate(spec)
        history = History(settings.home, lock_timeout=settings.lock_timeout)
        run = Run(run_id=run_id, task=setup.task.name, space=setup.space.name, proposer="manual", seed=settings.seed,
                  budget=1, config=settings.model_dump(mode="json") | setup.config)
        history.create_run(run)
        try:
            out = _evaluate_recorded(history, setup, run, spec, final)
            history.finish_run(run.run_id, RunStatus.DONE, out)
            return out
        except BaseException:
            history.finish_run(run.run_id, RunStatus.FAILED, None)
            raise
    finally:
        setup.pool.close()


def _evaluate_recorded(history: History, setup: Setup, run: Run, spec: dict, final: bool) -> dict:
    space = setup.space
    candidate = Candidate(candidate_id=f"{run.run_id}-c0000", run_id=run.run_id, seq=0, space=space.name, spec=spec,
                          canonical_key=space.canonical_key(spec), proposer="manual", rationale="given by the user",
                          status=Status.RUNNING)
    history.add_candidates([candidate])
    setup.pool.submit(Job(candidate_id=candidate.candidate_id, spec=spec))
    evaluation = None
    while evaluation is None:
        evaluation = next((e.evaluation for e in setup.pool.events(timeout=None)
                           if e.kind == "finished" and e.evaluation is not None), None)
    history.add_evaluations(run.run_id, [evaluation])
    out = {"run_id": run.run_id, "candidate_id": candidate.candidate_id, "task": setup.task.name,
           "status": evaluation.status.value, "error": evaluation.error, "val_accuracy": evaluation.val_accuracy,
           "fidelity": evaluation.fidelity, "curve": [p.model_dump() for p in evaluation.curve], "spec": spec,
           "params": evaluation.metrics.get("params"), "sandbox": evaluation.metrics.get("sandbox"),
           **space.extra_fields(spec)}
    if final and evaluation.status is Status.OK:
        reports = final_evaluations(setup.pool, candidate.candidate_id, spec, setup.final_seeds)
        history.add_evaluations(run.run_id, reports, update_status=False)
        accs = [r.test_accuracy for r in reports if r.status is Status.OK and r.test_accuracy is not None]
        out |= {"test_accuracy": statistics.fmean(accs) if accs else None, "test_source": reports[0].source}
        if len(setup.final_seeds) > 1:
            out |= {"test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "seeds": list(setup.final_seeds)}
    return out
