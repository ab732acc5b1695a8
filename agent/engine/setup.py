"""The setup of a run: settings -> task, space, evaluation pool and the run's monitors.

``prepare`` picks one of five paths: a NAS-Bench-201 table task, a curves file replayed as
training, a declared space looked up in its tables, a declared space trained through its builder,
and a training task (digits, cifar10, your arrays or images) on this machine or on a Ray cluster.
Each checks what it is given and fails with an error that names the fix before anything is
recorded. A training run's jobs run in the sandbox ``job_isolation`` describes. ``early_stopping``
and ``screening`` build what ``--early-stop`` and the pre-training measurements ask for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.engine.early_stop import EarlyStopMonitor
from agent.engine.halving import HalvingMonitor
from agent.engine.screen import Screen
from evaluator.early_stop.halving import SuccessiveHalving, default_rungs
from evaluator.errors import UserInputError
from evaluator.measure.latency import LatencySettings
from evaluator.measure.probe import ModelProbe, training_batch
from evaluator.objectives import Constraints, Objectives
from evaluator.pools.base import EvaluationPool
from evaluator.spaces import SPACES, SearchSpace, get_space
from evaluator.tasks import CURVES_PREFIX, Task, curves_task, is_curves_task, is_training_task, resolve_task, training_task
from sandbox.isolation import Isolation, IsolationUnavailable, check_isolation, describe_isolation


# How a search measures each candidate's latency before training: shorter than a one-off probe
# (the probe process stays warm between candidates, and the reference network normalises the
# machine's drift), the same settling rule.
SEARCH_LATENCY = dict(throughput_batch=32, warmup_runs=10, warmup_seconds=0.3, round_size=10, min_repeats=30,
                      max_repeats=1000, rel_tol=0.01, min_seconds=1.0, max_seconds=5.0)


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
    from sandbox.limits import Limits

    name = settings.space
    if declared is None and name is not None and name not in SPACES:
        raise UserInputError(f"space {name!r} cannot be trained on {settings.task}",
                             hint="use --space " + " or --space ".join(SPACES))
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
        pool, device, ray = _ray_pool(settings, run_id, dataset, space, epochs, limits, test_inject,
                                      builder_source)
        extra |= ray
        isolation = pool.isolation
    else:
        device = _device(settings.device)
        isolation = job_isolation(settings, dataset.files, device, candidate_code=space.runs_candidate_code)
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
                 # screening and proxy evidence score proposals on training images, not a synthetic batch
                 proxy_batch=training_batch(dataset.x_train, dataset.y_train, dataset.x_scale, seed=settings.seed)
                 if settings.screen or settings.proxy_evidence != "off" else None)


def _ray_pool(settings: Settings, run_id: str, dataset: Any, space: SearchSpace, epochs: int, limits: Any,
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
        isolation = job_isolation(settings, dataset.files, device, candidate_code=space.runs_candidate_code)
        pool = RayPool(dataset, space.name, cluster=cluster, run_id=run_id, workdir=settings.home / "work" / run_id,
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


def job_isolation(settings: Settings, data_files: tuple[Path, ...], device: str, *, candidate_code: bool) -> Isolation:
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
        require_network_isolation=candidate_code and not settings.unsafe,
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
    if (settings.space or task.default_space) != task.default_space:
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


def _early_stopping_mode(settings: Settings, epochs: int | None, guided: bool) -> str:
    """``--early-stop`` with ``auto`` resolved: successive halving where the surrogate guides the
    portfolio (``guided``) on a training task (on the digits it matched evolution's best validation
    accuracy in under half its training seconds: bench/digits_proposers.py, docs/search.md), off
    for the baselines (they stay the algorithms they are named after), a proposer of the caller's
    own, ``--surrogate off``, lookups (``epochs`` None) and a schedule too short for any default
    rung (it trains without halving rather than failing)."""
    if settings.early_stop != "auto":
        return settings.early_stop
    if epochs is None or not guided:
        return "off"
    fits = settings.rungs is not None or default_rungs(epochs, settings.reduction_factor)
    return "asha" if fits else "off"


def early_stopping(settings: Settings, setup: Setup, run_id: str, *, guided: bool = False
                   ) -> tuple[EarlyStopMonitor | None, HalvingMonitor | None, str]:
    """The forecast rule and / or successive halving, as ``--early-stop`` asks, and the mode
    (``auto`` resolved: ``guided`` says whether the surrogate guides the run's portfolio)."""
    mode = _early_stopping_mode(settings, setup.pool.epochs, guided)
    if mode == "off":
        if settings.rungs is not None:
            why = "early stopping is off" + ("" if settings.early_stop == "off" else
                                             " (--early-stop auto: successive halving is the surrogate-guided "
                                             "portfolio's default, and this search is not one)")
            raise UserInputError(f"--rungs {','.join(map(str, settings.rungs))} is given but {why}",
                                 hint="add --early-stop asha (or both), or drop --rungs")
        return None, None, mode
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
    return forecast, halving, mode


def screening(settings: Settings, setup: Setup, objectives: Objectives, constraints: Constraints) -> Screen | None:
    """The pre-training measurements a run needs, or None when it needs none."""
    latency = "latency" in objectives.names or constraints.max_latency_ms is not None
    if not (objectives.multi or constraints.any or settings.screen):
        return None
    if not setup.space.builds_in_trusted_process:
        if setup.task.kind == "tabular":
            return None  # the lookup's tables give the objectives' values (limits were refused by _prepare_lookup)
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
