"""Code mode through the real CLI: `agent eval --space code --file model.py`, its limits, the
refusal to run hostile code without network isolation, and --unsafe recorded on the run."""

from __future__ import annotations

import json
import textwrap

import pytest

from agent.store import History
from evaluator.spaces.code.seeds import seed_path
from sandbox.isolation import detect_layers
from tests.conftest import run_cli
from tests.security.attacks import PRELUDE

SECRET = "sk-code-mode-secret-5e4d3c2b1a"


def _has(layer: str) -> bool:
    return any(x.name == layer and x.available for x in detect_layers())


needs_bwrap = pytest.mark.skipif(not _has("bwrap"), reason="bubblewrap is not usable here (make install installs it as "
                                                               "root; `agent doctor` shows the sandbox layers)")


def model_file(tmp_path, name: str, body: str) -> str:
    """A model file: the attacks' prelude (imports and a Constant model), then ``body``."""
    path = tmp_path / name
    path.write_text('"""A test model."""\n' + PRELUDE + "\n\n" + textwrap.dedent(body).strip() + "\n")
    return str(path)


@pytest.mark.slow
@needs_bwrap
def test_eval_trains_a_model_file_in_the_sandbox_and_records_it(tmp_path):
    home = tmp_path / "home"
    out = run_cli("eval", "--task", "digits", "--space", "code", "--file", str(seed_path("digits")), "--epochs", "1",
                  "--json", home=home, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and result["error"] is None and result["val_accuracy"] > 0.3  # 1 epoch; chance 0.1
    assert result["params"] > 1000 and "bwrap" in result["sandbox"] and "seccomp" in result["sandbox"]
    run = json.loads(run_cli("history", "--run", result["run_id"], "--json", home=home).stdout)
    (cand,) = run["candidates"]
    assert cand["candidate_id"] == result["candidate_id"] and cand["val_accuracy"] == result["val_accuracy"]
    config = History(home).get_run(result["run_id"])["config"]
    assert config["unsafe"] is False and config["sandbox"].startswith("bwrap")


@pytest.mark.slow
@needs_bwrap
def test_eval_limits_come_from_timeout_and_memory_flags(tmp_path):
    """--timeout ends the job; --memory-mb is the job's limit (the memory bomb itself is in the
    security battery), recorded with the run."""
    home = tmp_path / "home"
    loop = model_file(tmp_path, "loop.py", """
        def build_model(input_shape, num_classes):
            while True:
                pass
        """)
    out = run_cli("eval", "--task", "digits", "--file", loop, "--timeout", "5", "--memory-mb", "1500", "--json",
                  home=home, timeout=120)
    result = json.loads(out.stdout)
    assert out.returncode == 1 and result["status"] == "timeout" and result["val_accuracy"] is None
    assert "wall-clock limit of 5 s" in result["error"]
    config = History(home).get_run(result["run_id"])["config"]
    assert config["timeout"] == 5 and config["memory_mb"] == 1500


@pytest.mark.slow
def test_a_file_that_fails_the_static_checks_is_refused_before_anything_runs(tmp_path):
    home = tmp_path / "home"
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef build_model(input_shape, num_classes)\n    return None\n")
    out = run_cli("eval", "--task", "digits", "--file", str(bad), "--json", home=home)
    assert out.returncode == 2 and out.stdout == ""
    assert "line 3" in out.stderr and "build_model" in out.stderr
    assert not History(home).exists() or not History(home).list_runs()
    missing = run_cli("eval", "--task", "digits", "--file", str(tmp_path / "nope.py"), home=home)
    assert missing.returncode == 2 and "cannot read --file" in missing.stderr


@pytest.mark.slow
def test_code_mode_refuses_without_network_isolation_and_unsafe_is_recorded(tmp_path):
    """--sandbox none stands in for a machine without bubblewrap or unshare. --unsafe runs the
    file anyway, records it on the run, and still keeps the trusted side's secrets out of the
    record: the candidate here reads the parent's environment (nothing hides it without a pid
    namespace) and raises with it; the error is redacted before it is stored."""
    home = tmp_path / "home"
    thief = model_file(tmp_path, "thief.py", """
        def build_model(input_shape, num_classes):
            with open("/proc/%d/environ" % os.getppid(), "rb") as fh:
                raise RuntimeError("found " + fh.read().decode("latin-1").replace("\\0", " "))
        """)
    env = {"OPENAI_API_KEY": SECRET}
    refused = run_cli("eval", "--task", "digits", "--file", thief, "--sandbox", "none", "--json", home=home, env=env)
    assert refused.returncode == 2 and "--unsafe" in refused.stderr and "network" in refused.stderr
    out = run_cli("eval", "--task", "digits", "--file", thief, "--sandbox", "none", "--unsafe", "--json", home=home,
                  env=env, timeout=180)
    result = json.loads(out.stdout)
    assert result["status"] == "failed" and "found" in result["error"]
    assert SECRET not in result["error"] and SECRET not in out.stdout and SECRET not in out.stderr
    assert "OPENAI_API_KEY=[redacted]" in result["error"]  # the layer that caught it
    history = History(home)
    config = history.get_run(result["run_id"])["config"]
    assert config["unsafe"] is True and "NOT isolated" in config["sandbox"]
    assert SECRET not in json.dumps(history.get_candidate(result["candidate_id"]), default=str)


@pytest.mark.slow
@needs_bwrap
def test_a_model_whose_output_ignores_its_input_trains_and_records_its_undefined_proxies(tmp_path):
    """It used to fail before training: jacob_cov raised AttributeError in the worker. A proxy that
    cannot be computed is recorded as null with its reason; the candidate trains."""
    home = tmp_path / "home"
    prior = model_file(tmp_path, "prior.py", """
        class Prior(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.logits = nn.Parameter(torch.zeros(num_classes))

            def forward(self, x):
                return self.logits.expand(x.shape[0], -1)


        def build_model(input_shape, num_classes):
            return Prior(num_classes)
        """)
    out = run_cli("eval", "--task", "digits", "--space", "code", "--file", prior, "--epochs", "1", "--json",
                  home=home, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and result["error"] is None, result["error"]
    (metrics,) = [row[0] for row in History(home).query("SELECT metrics FROM evaluations")[1]]
    metrics = json.loads(metrics) if isinstance(metrics, str) else metrics
    assert metrics["proxy_jacob_cov"] is None and "jacob_cov: the output does not depend" in metrics["proxy_undefined"]
