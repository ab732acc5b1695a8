"""Export one candidate: the checks, the files, and the ``--json`` object.

Order: the candidate (unknown, invalid or unevaluated ones are refused), the ONNX tools when
asked, the export folder (refused when it holds anything but an earlier export), the
network's source, the weights, the recipe and the card; then, for the spaces whose
network is built on this side (layers, nb201), the generated model.py is executed and
checked against the evaluator's own network: the same state_dict keys, shapes and dtypes,
the same parameter count, and the same output for the same weights. Only then are the files
written. A code-mode candidate is never imported here: its file is hostile input that runs
only in the sandbox (so it gets no ONNX file either).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.exporter import weights as weights_mod
from agent.exporter.code_source import code_source
from agent.exporter.facts import Facts, gather
from agent.exporter.layers_source import layers_source
from agent.exporter.nb201_source import nb201_source
from agent.exporter.recipe import normalisation_from_data, training_recipe
from agent.exporter.template import Source, WeightsLine, render, results_card
from agent.store import History
from evaluator.errors import UserInputError
from evaluator.spaces import space_class

# Every file an export may write: an earlier export's files are replaced as a whole.
EXPORT_FILES = ("model.py", "candidate_model.py", "recipe.json", "weights.pt", "model.onnx")
OUT_HINT = "pass --out with a folder you can write (default: $AGENT_HOME/exports/<candidate id>)"


class ExportMismatch(RuntimeError):
    """The generated model.py does not build the evaluator's network: a bug in the exporter."""


def export_candidate(history: History, candidate_id: str, *, out: Path | str | None = None,
                     onnx: bool = False) -> dict[str, Any]:
    """Write the export of ``candidate_id`` into ``out`` and return the ``--json`` object."""
    from agent.version import __version__

    facts = gather(history, candidate_id)
    warnings: list[str] = []
    if facts.status != "ok":
        error = f" ({facts.error.splitlines()[0][:300]})" if facts.error else ""
        warnings.append(f"candidate {facts.candidate_id} is {facts.status}, not ok{error}: its architecture is "
                        f"exported as the evaluator built it, and the card reports a {facts.status} evaluation")
    if onnx:
        from agent.exporter.onnx_file import require_onnx

        if not space_class(facts.space).builds_in_trusted_process:
            raise UserInputError(
                f"--onnx is not available for {'code-mode' if space_class(facts.space).runs_candidate_code else 'declared-space'} candidate "
                f"{facts.candidate_id}: writing ONNX means building the network, which runs the candidate's code (or "
                "the space's builder), and archagent runs that code only in the sandbox",
                hint="export without --onnx, read candidate_model.py, then run torch.onnx.export on model.py's "
                     "build_model() yourself")
        require_onnx()
    folder = _check_folder(Path(out) if out is not None else history.home / "exports" / facts.candidate_id)

    source, architecture = _source(facts)
    warnings += source.warnings
    reference = _evaluator_network(facts)  # None for code mode: never built here
    chosen, weight_warnings, weights_note = weights_mod.choose(
        facts.finals, weights_mod.reference_of(reference) if reference is not None else None)
    warnings += weight_warnings
    normalisation = _normalisation(facts, chosen, warnings)
    recipe = training_recipe(facts, normalisation)
    params = sum(p.numel() for p in reference.parameters()) if reference is not None else facts.recorded_params
    if reference is not None and facts.recorded_params is not None and params != facts.recorded_params:
        warnings.append(f"the exported network has {params:,} parameters, the evaluation recorded "
                        f"{facts.recorded_params:,}: the network builder changed since this run was evaluated")
    if params is None:
        warnings.append("no parameter count was recorded for this candidate")

    exported = datetime.now(timezone.utc)
    rows = results_card(facts, params=params, architecture=architecture,
                        weights=WeightsLine(chosen.seed, chosen.test_accuracy) if chosen else None,
                        weights_note=weights_note, exported=exported, version=__version__)
    text = render(rows, f"archagent export of candidate {facts.candidate_id}", source,
                  input_shape=facts.input_shape, num_classes=facts.num_classes, recipe=recipe)

    network = None
    if reference is not None:
        module = _run_source(text, folder / "model.py")
        network = module.build_model()
        _check_same_network(network, reference, facts)
        if chosen is not None:
            module.load_weights(network, chosen.path)  # the generated loader, on the checked file

    files: dict[str, str] = {"model.py": text, **source.extra_files}
    files["recipe.json"] = json.dumps({
        "export": {"candidate_id": facts.candidate_id, "run_id": facts.run_id, "task": facts.task, "space": facts.space,
                   "status": facts.status, "exported": exported.isoformat(timespec="seconds"), "archagent": __version__},
        "results": {"val_accuracy": facts.val_accuracy, "val_epochs": facts.val_epochs,
                    "test_accuracy": facts.test_accuracy, "test_accuracy_std": facts.test_accuracy_std,
                    "seeds": facts.seeds, "test_source": facts.final_source, "params": params,
                    "recorded_params": facts.recorded_params,
                    "weights": None if chosen is None else {"file": "weights.pt", "seed": chosen.seed,
                                                            "test_accuracy": chosen.test_accuracy}},
        "input_shape": list(facts.input_shape), "num_classes": facts.num_classes, "recipe": recipe,
    }, indent=2) + "\n"
    written = _write(folder, files, chosen)
    if onnx:
        from agent.exporter.onnx_file import write_onnx

        write_onnx(network, facts.input_shape, folder / "model.onnx")
        written.append("model.onnx")
    return {"candidate_id": facts.candidate_id, "run_id": facts.run_id, "space": facts.space, "status": facts.status,
            "out": str(folder), "files": written, "params": params,
            "weights": str(folder / "weights.pt") if chosen is not None else None,
            "weights_seed": chosen.seed if chosen is not None else None,
            "weights_note": None if chosen is not None else weights_note, "warnings": warnings}


# -- the folder ----------------------------------------------------------------------------


def _check_folder(folder: Path) -> Path:
    """Where the export goes (created when the files are written): a new or empty folder, or an
    earlier export's, which is replaced; never a folder that holds anything else."""
    folder = folder.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"cannot export into {folder}: it is a file, not a folder", hint=OUT_HINT)
    try:
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    except OSError as exc:
        raise UserInputError(f"cannot read the export folder {folder}: {exc.strerror or exc}", hint=OUT_HINT) from None
    foreign = sorted(present - set(EXPORT_FILES))
    if present and (foreign or not _is_export(folder)):
        shown = ", ".join((foreign or sorted(present))[:5])
        raise UserInputError(f"the export folder {folder} is not empty and holds no earlier archagent export ({shown})",
                             hint="pass --out with a new or empty folder; an earlier export's folder is replaced")
    return folder


def _is_export(folder: Path) -> bool:
    try:
        return "archagent" in json.loads((folder / "recipe.json").read_text(encoding="utf-8")).get("export", {})
    except (OSError, ValueError, AttributeError):
        return False


def _write(folder: Path, files: dict[str, str], chosen: weights_mod.Chosen | None) -> list[str]:
    """Replace an earlier export's files with these (each through a temporary name)."""
    import torch

    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create the export folder {folder}: {exc.strerror or exc}", hint=OUT_HINT) from None
    try:
        for name in EXPORT_FILES:
            (folder / name).unlink(missing_ok=True)
        for name, content in files.items():
            tmp = folder / f".{name}.partial"
            tmp.write_text(content, encoding="utf-8")
            tmp.replace(folder / name)
            written.append(name)
        if chosen is not None:
            tmp = folder / ".weights.pt.partial"
            torch.save(chosen.state, tmp)  # the checked tensors, not the worker's file as it was
            tmp.replace(folder / "weights.pt")
            written.append("weights.pt")
    except OSError as exc:
        raise UserInputError(f"cannot write the export into {folder}: {exc.strerror or exc}", hint=OUT_HINT) from None
    return written


# -- the network ---------------------------------------------------------------------------


def _source(facts: Facts) -> tuple[Source, str]:
    """The space's part of model.py and a one-line description of the architecture."""
    write = _SOURCES.get(facts.space)
    if write is None:
        raise UserInputError(f"candidate {facts.candidate_id} is of space {facts.space!r}, which export does not know",
                             hint="export knows the " + ", ".join(_SOURCES) + " spaces")
    return write(facts)


def _layers_source(facts: Facts) -> tuple[Source, str]:
    space = _space(facts)
    summary = space.summary(facts.spec)
    return layers_source(space.validate(facts.spec), summary), summary


def _nb201_source(facts: Facts) -> tuple[Source, str]:
    from evaluator.spaces.nb201 import arch_string

    spec = _space(facts).validate(facts.spec)
    return nb201_source(spec), f"NAS-Bench-201 cell {arch_string(spec)} (C=16, N=5)"


def _code_source(facts: Facts) -> tuple[Source, str]:
    return code_source(facts.spec["source"]), _space(facts).summary(facts.spec)


def _space(facts: Facts) -> Any:
    from evaluator.spaces import get_space

    return get_space(facts.space, input_shape=facts.input_shape, num_classes=facts.num_classes)


def _declared_source(facts: Facts) -> tuple[Source, str]:
    """model.py of a trained declared-space candidate: the run's builder (checked unchanged) and its choices."""
    import hashlib

    from agent.exporter.code_source import declared_source

    path, digest = facts.config.get("builder"), facts.config.get("builder_sha256")
    if not path or not digest:
        raise UserInputError(f"candidate {facts.candidate_id} of a declared space was looked up in a table, never "
                             "built: there is no network to export",
                             hint="train it through the space file's builder: agent eval --space-file FILE --task TASK "
                                  f"--spec '<its spec from agent show {facts.candidate_id} --json>' --final, then export that")
    try:
        builder = Path(path).read_bytes()
    except OSError as exc:
        raise UserInputError(f"the builder {path} of run {facts.run_id} cannot be read: {exc}",
                             hint="put the space file's builder back where the run found it, then export again") from None
    if hashlib.sha256(builder).hexdigest() != digest:
        raise UserInputError(f"the builder {path} changed since run {facts.run_id} trained candidate {facts.candidate_id}",
                             hint="put the builder back as it was (its SHA-256 is in the run's config), then export again")
    name = Path(facts.config.get("space_file") or "the space file").name
    summary = " ".join(f"{k}={v}" for k, v in facts.spec.items())
    return declared_source(builder.decode("utf-8"), facts.spec, name), f"{name}: {summary}"


# How each space's candidates become model.py: a writer per space, by the name the history records.
_SOURCES: dict[str, Callable[[Facts], tuple[Source, str]]] = {
    "layers": _layers_source, "nb201": _nb201_source, "code": _code_source, "declared": _declared_source}


def _evaluator_network(facts: Facts) -> Any | None:
    """The evaluator's own network for the candidate (the reference), or None where building it
    would run code here (code mode, a declared space's builder)."""
    if not space_class(facts.space).builds_in_trusted_process:
        return None
    import torch

    from evaluator.models import build_model

    torch.manual_seed(0)
    return build_model(facts.space, facts.spec, facts.input_shape, facts.num_classes)


def _run_source(text: str, path: Path) -> types.ModuleType:
    """Execute the generated model.py (our own code, from a validated spec) as a module."""
    module = types.ModuleType("archagent_export_model")
    module.__file__ = str(path)
    exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - generated here, not candidate code
    return module


def _check_same_network(network: Any, reference: Any, facts: Facts) -> None:
    """The generated network is the evaluator's: keys, shapes, dtypes, parameters, outputs."""
    import torch

    ours, theirs = weights_mod.reference_of(network), weights_mod.reference_of(reference)
    problem = weights_mod.check_state(reference.state_dict(), ours) if ours != theirs else None
    if ours != theirs:
        raise ExportMismatch(f"the generated model.py for {facts.candidate_id} does not build the evaluator's network: "
                             f"{problem or 'the state_dict keys differ'}")
    n_ours = sum(p.numel() for p in network.parameters())
    n_theirs = sum(p.numel() for p in reference.parameters())
    if n_ours != n_theirs:
        raise ExportMismatch(f"the generated model.py has {n_ours:,} parameters, the evaluator's network {n_theirs:,}")
    network.load_state_dict(reference.state_dict())
    network.eval()
    reference.eval()
    x = torch.randn(1, *facts.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = network(x), reference(x)
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-5, atol=1e-6):
        raise ExportMismatch(f"the generated model.py computes other outputs than the evaluator's network for "
                             f"{facts.candidate_id} (largest difference {float((a - b).abs().max()):.3g})")


def _normalisation(facts: Facts, chosen: weights_mod.Chosen | None, warnings: list[str]) -> dict[str, Any] | None:
    """How inputs were normalised in training: as the pool recorded it beside the weights, else
    recomputed from the task's data (training tasks only)."""
    if facts.task_kind != "train":
        return None
    kept = (chosen.kept or {}).get("input") if chosen is not None else None
    if _is_normalisation(kept, facts.input_shape[0]):
        return kept
    normalisation, why = normalisation_from_data(facts)
    if why:
        warnings.append(why)
    return normalisation


def _is_normalisation(value: Any, channels: int) -> bool:
    def numbers(xs: Any) -> bool:
        return isinstance(xs, list) and len(xs) == channels and all(isinstance(x, (int, float)) for x in xs)

    return (isinstance(value, dict) and isinstance(value.get("scale"), (int, float)) and value["scale"] > 0
            and numbers(value.get("mean")) and numbers(value.get("std")))
