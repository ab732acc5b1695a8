"""Shared fixtures.

``nb201_dir`` is the real NAS-Bench-201 tables in ../shared/benchdata/nb201 (CI has them);
tests that need it skip with the reason when it is absent, as in a user's clone.
``tiny_tables`` writes small tables in the same format, for tests that need no real data.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluator.spaces.nb201 import EDGE_FIELDS, OPS, arch_string

ROOT = Path(__file__).resolve().parents[1]
BENCHDATA = Path(os.environ.get("ARCHAGENT_BENCHDATA", ROOT.parent / "shared" / "benchdata"))
NB201_DIR = BENCHDATA / "nb201"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets its share of the cores for torch: in the worker, and
    through OMP_NUM_THREADS in the processes it starts (the CLI, bench scripts) and in the jobs of
    its training pools (evaluator.pools.training.job_threads). Processes that each run torch on
    every core make each other's OpenMP threads wait at every step: on 2 busy cores the offline
    model answered 5x slower with 2 threads than with 1, and a digits search with 2-thread jobs
    beside another busy process took 2.5-3.5x as long as with 1-thread jobs."""
    if hasattr(config, "workerinput"):  # an xdist worker
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // int(config.workerinput["workercount"]))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """What the markers (pyproject.toml) mean here:

    - ``llm``: the test runs the offline local model. It skips where the model is not installed;
      under pytest-xdist (`make test`: --dist loadgroup) the ``llm`` tests run on one worker, one
      after another: they share the model cache, whose preparation on a fresh machine (about a
      minute) would otherwise keep a second worker waiting on the cache's lock, and each worker
      would hold its own 1 GB copy.
    - ``ray``: the test starts or joins a Ray cluster; the ``ray`` tests run on one worker (one
      cluster at a time on a small machine).
    - ``gpu``: the test needs CUDA; it skips without it.
    - ``slow``: under pytest-xdist the slow tests come first: the scheduler hands tests out in this
      order, so the long ones start early, beside the many short ones, rather than last, with one
      worker busy and the others idle. (pytest-xdist hands out a group, the ``ray`` one, before any
      single test: it orders the work by the number of tests in a unit.) A plain run keeps the
      files' order.

    `make test` runs the ``llm`` tests in a second pass of their own, with every core (Makefile):
    beside training jobs and Ray on 2 cores the model answered about 5x slower.
    """
    for item in items:
        if item.get_closest_marker("llm") is not None:
            item.add_marker(pytest.mark.xdist_group("offline-model"))
            if not local_model_installed():
                item.add_marker(pytest.mark.skip(reason="the default local model is not installed (make install "
                                                        "installs it)"))
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))
        if item.get_closest_marker("gpu") is not None and not cuda_available():
            item.add_marker(pytest.mark.skip(reason="no CUDA device here"))
    if hasattr(config, "workerinput"):  # an xdist worker; every worker sorts alike
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@functools.cache
def local_model_installed() -> bool:
    """Whether the offline model and what runs it are installed (asked once, and only when a
    collected test needs it: importing transformers takes seconds)."""
    from agent.llm import local_backend
    from agent.llm.base import LLMError

    try:
        local_backend.default_parts()
        import transformers  # noqa: F401
        import xgrammar  # noqa: F401
    except (LLMError, ImportError):
        return False
    return True


@functools.cache
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _no_default_proxy_evidence(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches in tests use no proxy evidence unless they ask: by default (``proxy_evidence =
    "auto"``) a NAS-Bench-201 search scores every pool proposal with synflow in the model probe,
    about 25 s for a first pool of 256 on 2 cores, and hundreds of tests run short NAS-Bench-201
    searches for other reasons. In this process the space's measured choice is set aside; in the
    processes tests start (``run_cli``, ``child_env``) AGENT_PROXY_EVIDENCE=off says the same. Tests marked
    ``proxy_evidence`` run the real default (tests/agent/test_surrogate.py)."""
    if request.node.get_closest_marker("proxy_evidence") is not None:
        monkeypatch.delenv("AGENT_PROXY_EVIDENCE", raising=False)
        return
    from evaluator.spaces.nb201 import Nb201Space

    monkeypatch.setattr(Nb201Space, "evidence_proxy", None)
    monkeypatch.setenv("AGENT_PROXY_EVIDENCE", "off")


@pytest.fixture(scope="session")
def nb201_dir() -> Path:
    if not (NB201_DIR / "nb201_12epoch_accuracy.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {NB201_DIR} (../shared/benchdata is only in the team's checkouts and CI)")
    return NB201_DIR


def all_archs() -> list[str]:
    return [arch_string(dict(zip(EDGE_FIELDS, ops))) for ops in itertools.product(OPS, repeat=len(EDGE_FIELDS))]


def write_tiny_tables(folder: Path, archs: list[str], final: bool = True) -> Path:
    """A signal table (and a cifar10 final table) in the NB201 format; accuracy grows with conv count."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["index,arch,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val"]
    final_lines = ["index,arch,cifar10_test_200ep,isomorphism_class"]
    for i, arch in enumerate(archs):
        score = 10.0 + 10.0 * arch.count("conv") + 0.001 * i  # percent; distinct values
        lines.append(f'{i},{arch},{score + 1},{score},{score / 2 + 1},{score / 2},{score / 3 + 1},{score / 3}')
        final_lines.append(f"{i},{arch},{min(100.0, score + 20)},x")
    (folder / "nb201_12epoch_accuracy.csv").write_text("\n".join(lines) + "\n")
    if final:
        (folder / "nb201_cifar10_200epoch_test.csv").write_text("\n".join(final_lines) + "\n")
    return folder


@pytest.fixture
def tiny_tables(tmp_path: Path) -> Path:
    """Tables covering all 15,625 cells with synthetic accuracies (best: all nor_conv)."""
    return write_tiny_tables(tmp_path / "tables", all_archs())


def default_sigint() -> None:
    """For Popen(preexec_fn=...): a child started from a background job inherits SIGINT ignored
    (POSIX shells do that to asynchronous commands), and Python then never raises
    KeyboardInterrupt. Tests that send SIGINT restore the default first."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_env() -> dict[str, str]:
    """This process's environment for an `agent` process a test starts: without the AGENT_
    settings of whoever runs the tests, but with AGENT_PROXY_EVIDENCE (set off for tests that do
    not ask for the default proxy evidence: ``_no_default_proxy_evidence``)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") or k == "AGENT_PROXY_EVIDENCE"}


def run_cli(*args: str, home: Path | None = None, env: dict | None = None, cwd: Path | None = None, timeout: float = 120):
    """Run the real `agent` CLI in a subprocess; returns CompletedProcess with text output."""
    full_env = child_env()
    if home is not None:
        full_env["AGENT_HOME"] = str(home)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)


def load_bench(name: str, monkeypatch: pytest.MonkeyPatch):
    """The script ``bench/<name>.py`` as a module (registered in sys.modules for this test only:
    its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
