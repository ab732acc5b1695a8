"""What every exported model.py shares, around the network's own source.

    # results card (comments)
    \"\"\"docstring\"\"\"
    imports (the standard library, torch)
    INPUT_SHAPE, NUM_CLASSES, RECIPE, WEIGHTS_FILE
    <the network and build_model(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES)>   (per space)
    normalise(images), load_weights(model, path), main(), if __name__ == "__main__": main()

``python model.py`` builds the network, prints ``parameters: N``, loads ``weights.pt`` when it
lies beside the file (tensors only, every key and shape checked) and runs a forward pass on
random input.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.exporter.facts import Facts

CARD_WIDTH = 100


@dataclass(frozen=True)
class Source:
    """A space's part of model.py."""

    docstring: str
    body: str  # the network's classes and functions, ending with build_model
    imports: tuple[str, ...] = ()  # extra import lines (standard library) besides pathlib and torch
    extra_files: dict[str, str] = field(default_factory=dict)  # name -> text, written beside model.py
    warnings: tuple[str, ...] = ()
    needs: tuple[str, ...] = ("Needs torch alone (and the standard library).",)  # the card's closing lines


@dataclass(frozen=True)
class WeightsLine:
    seed: int | None
    test_accuracy: float


def results_card(facts: Facts, *, params: int | None, architecture: str, weights: WeightsLine | None,
                 weights_note: str | None, exported: datetime, version: str) -> list[tuple[str, str]]:
    """The card's rows: (label, text)."""
    started = f"; started {facts.run_created:%Y-%m-%d %H:%M} UTC" if facts.run_created else ""
    rows = [("run", f"{facts.run_id} (task {facts.task}, space {facts.space}, proposer {facts.proposer}{started})"),
            ("candidate", f"{facts.candidate_id}, status {facts.status}"
                          + (f": {facts.error.splitlines()[0][:300]}" if facts.error and facts.status != "ok" else "")),
            ("architecture", architecture),
            ("data", f"{facts.data}; input {'x'.join(map(str, facts.input_shape))} (CxHxW), {facts.num_classes} classes")]
    if facts.val_accuracy is not None:
        where = f" ({facts.val_source})" if facts.val_source else ""
        epochs = f"{facts.val_epochs:g} epoch{'' if facts.val_epochs == 1 else 's'}"
        rows.append(("validation", f"accuracy {facts.val_accuracy:.4f} after {epochs}{where}"))
    else:
        rows.append(("validation", "no ok search evaluation recorded"))
    rows.append(("final test", _final_text(facts)))
    if params is not None:
        counted = "" if facts.recorded_params is None else (
            ", as the evaluator counted" if facts.recorded_params == params else
            f"; the evaluator counted {facts.recorded_params:,}")
        rows.append(("parameters", f"{params:,}{counted}"))
    if weights is not None:
        seed = f"seed {weights.seed}" if weights.seed is not None else "its seed"
        rows.append(("weights", f"weights.pt: the final retraining with {seed} (test accuracy {weights.test_accuracy:.4f})"))
    else:
        rows.append(("weights", f"none: {weights_note}" if weights_note else "none"))
    rows.append(("exported", f"{exported:%Y-%m-%d %H:%M} UTC by archagent {version}"))
    return rows


def _final_text(facts: Facts) -> str:
    if not facts.finals:
        failed = f" ({len(facts.final_errors)} final run(s) failed: {facts.final_errors[0]})" if facts.final_errors else ""
        return ("not recorded: only a search's best candidate (or `agent eval --final`) is measured on the test split"
                + failed)
    mean = facts.test_accuracy
    if facts.task_kind != "train":
        return f"accuracy {mean:.4f} ({facts.final_source})"
    seeds = ", ".join(str(s) for s in facts.seeds)
    if len(facts.finals) > 1:
        text = f"accuracy {mean:.4f} +- {facts.test_accuracy_std:.4f} (mean +- std over {len(facts.finals)} seeds: {seeds})"
    else:
        text = f"accuracy {mean:.4f} (one retraining from scratch, seed {seeds}; no spread)"
    if facts.final_errors:
        text += f"; {len(facts.final_errors)} more final run(s) failed: {facts.final_errors[0]}"
    return text


def plain(text: str) -> str:
    """``text`` safe inside a comment: every character that is not printable (line breaks, NUL,
    other controls) becomes a space. Candidate errors and code-mode summaries come from hostile
    input, and a line break would end the comment and start code."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def header(rows: list[tuple[str, str]], title: str, needs: tuple[str, ...]) -> str:
    """The card as a comment block."""
    width = max(len(label) for label, _ in rows) + 2
    lines = ["# " + "=" * (CARD_WIDTH - 2), f"# {plain(title)}", "#"]
    for label, text in rows:
        wrapped = textwrap.wrap(plain(text), CARD_WIDTH - 4 - width, break_long_words=True,
                                break_on_hyphens=False) or [""]
        lines.append(f"#   {label.ljust(width)}{wrapped[0]}")
        lines += [f"#   {' ' * width}{more}" for more in wrapped[1:]]
    about = " ".join((*needs, "`python model.py` builds the network, prints its parameter count, loads weights.pt "
                      "when it lies beside this file, and runs a forward pass."))
    lines += ["#", *(f"# {line}" for line in textwrap.wrap(plain(about), CARD_WIDTH - 2)), "# " + "=" * (CARD_WIDTH - 2)]
    return "\n".join(lines)


def render(rows: list[tuple[str, str]], title: str, source: Source, *, input_shape: tuple[int, ...],
           num_classes: int, recipe: dict[str, Any]) -> str:
    """The whole model.py."""
    imports = sorted({"from pathlib import Path", *source.imports}, key=lambda line: line.split()[1])
    parts = [
        header(rows, title, source.needs),
        '"""' + source.docstring.strip() + '\n"""',
        "from __future__ import annotations",
        "\n".join(imports),
        "import torch\nfrom torch import nn",
        f"INPUT_SHAPE = {tuple(input_shape)!r}  # (C, H, W) of one image\n"
        f"NUM_CLASSES = {num_classes!r}\n"
        "# How the network was trained (recipe.json holds the same)\n"
        f"RECIPE = {literal(recipe)}\n"
        'WEIGHTS_FILE = Path(__file__).resolve().with_name("weights.pt")',
        source.body.strip(),
        TAIL.strip(),
    ]
    text = ""
    for i, part in enumerate(parts):
        gap = "" if i == 0 else "\n\n\n" if i >= 6 else "\n\n"
        text += gap + part
    return text + "\n"


def literal(value: Any, indent: int = 0) -> str:
    """A Python literal for JSON-like data: one key a line, short lists of numbers on one line."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, (list, tuple)):
        inner = [literal(v, indent + 4) for v in value]
        one_line = "[" + ", ".join(inner) + "]"
        if len(one_line) + indent < CARD_WIDTH and "\n" not in one_line:
            return one_line
        return "[\n" + "\n".join(f"{pad}{v}," for v in inner) + "\n" + " " * indent + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a Python string literal
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise TypeError(f"{type(value).__name__} has no literal here")


TAIL = '''
def normalise(images):
    """Raw images as the network saw them in training: (x / scale - mean) / std per channel
    (RECIPE["input"]); ``images`` is (B, C, H, W) pixel values as the task's data hold them."""
    spec = RECIPE["input"]
    if spec.get("mean") is None:
        raise ValueError("this export records no input normalisation (RECIPE['input']); normalise the images as the "
                         "network was trained to expect")
    x = torch.as_tensor(images, dtype=torch.float32) / spec["scale"]
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(-1, 1, 1)
    return (x - mean) / std


def load_weights(model, path=WEIGHTS_FILE):
    """Load a state_dict saved by archagent into ``model``: tensors only (loading runs no code),
    and every key and shape must match the network."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit this network: {exc}") from None
    return model


def main():
    model = build_model()
    print(f"parameters: {sum(p.numel() for p in model.parameters())}")
    if WEIGHTS_FILE.is_file():
        load_weights(model)
        print(f"weights: loaded {WEIGHTS_FILE.name}")
    model.eval()
    images = torch.randn(2, *INPUT_SHAPE)
    with torch.no_grad():
        logits = model(images)
    print(f"forward pass: input {tuple(images.shape)} -> logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
'''
