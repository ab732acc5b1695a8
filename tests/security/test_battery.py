"""The security battery: hostile model files run through a real code-mode search on digits.

Each attack (tests/security/attacks.py) is proposed as a candidate, checked statically,
trained in the sandbox (bubblewrap, seccomp, cgroups, rlimits, quotas), and recorded in a
real DuckDB history. Every attack must be contained: recorded with a final status and a clear
reason, nothing reaches the host, no process of the job survives, no secret reaches the
recorded errors, the history or the next prompt, and the search goes on to train a real
candidate afterwards.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest

from agent.config import Settings
from agent.engine.runner import run_search
from agent.prompting import HistoryView, Prompts
from agent.proposers.base import Proposal, ProposalContext, Proposer
from agent.store import History
from evaluator.spaces.code.seeds import seed_source
from sandbox.isolation import detect_layers
from tests.security.attacks import make_attacks
from tests.security.processes import become_subreaper, descendants, leftovers

ENV_SECRET = "sk-battery-ENV-9f8e7d6c5b4a"
FILE_SECRET = "BATTERY-PRIVATE-KEY-0a1b2c3d"


def _layer(name: str) -> bool:
    return any(layer.name == name and layer.available for layer in detect_layers())


needs_bwrap = pytest.mark.skipif(not _layer("bwrap"), reason="bubblewrap is not usable here (make install installs it "
                                                                 "as root; `agent doctor` shows the sandbox layers)")


class ListProposer(Proposer):
    """Proposes the given model files in order: the attacks, then the seed."""

    name: ClassVar[str] = "battery"

    def __init__(self, space: Any, sources: list[tuple[str, str]]) -> None:
        super().__init__(space, 0)
        self.queue = list(sources)

    def propose(self, n: int, context: ProposalContext) -> list[Proposal]:
        out = []
        while self.queue and len(out) < n:
            name, source = self.queue.pop(0)
            out.append(Proposal(spec={"source": source}, rationale=name))
        return out


class LoopbackServer:
    """A TCP server on the host's 127.0.0.1 that records every connection it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _all_history_text(path: Path) -> str:
    """Every value of every table of the history file, as text."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return "\n".join(str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    finally:
        con.close()


@pytest.mark.slow
@needs_bwrap
def test_every_attack_is_contained_recorded_and_the_search_goes_on(tmp_path, monkeypatch):
    fake_home = tmp_path / "home"
    (fake_home / ".ssh").mkdir(parents=True)
    (fake_home / ".ssh" / "id_ed25519").write_text(FILE_SECRET)
    (fake_home / ".config" / "openai").mkdir(parents=True)
    (fake_home / ".config" / "openai" / "key").write_text(FILE_SECRET)
    monkeypatch.setenv("HOME", str(fake_home))  # the trusted side's home: the sandbox hides it
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    monkeypatch.setenv("ARCHAGENT_BATTERY_TOKEN", ENV_SECRET)

    import evaluator

    package_dir = Path(evaluator.__file__).parent
    marker = f"archagent-escape-{os.getpid()}"
    server = LoopbackServer()
    attacks = make_attacks(port=server.port, fake_home=fake_home, marker=marker, package_dir=package_dir)
    sources = [(a.name, a.source) for a in attacks] + [("seed", seed_source("digits"))]
    settings = Settings(home=tmp_path / "agent-home", task="digits", space="code", budget=len(sources), epochs=1,
                        workers=2, timeout=15, memory_mb=3000, disk_mb=64, final_seeds=1, proxies=[])
    become_subreaper()  # a daemon that escapes its job would be re-parented here, and found
    before = descendants()  # helpers that earlier tests left running are not this test's business
    try:
        from evaluator.spaces import get_space

        space = get_space("code", input_shape=(1, 8, 8), num_classes=10, task="digits")
        summary = run_search(settings, proposer=ListProposer(space, sources))
    finally:
        server.close()
    left = leftovers(before=before)
    assert not left, f"processes of finished jobs remain: {left}"

    history = History(settings.home)
    by_source = {c["spec"]["source"]: c for c in history.run_candidates(summary.run_id)}
    assert len(by_source) == len(sources)
    rows = {name: by_source[source] for name, source in sources}
    problems = []
    for attack in attacks:
        row = rows[attack.name]
        if row["status"] not in attack.statuses:
            problems.append(f"{attack.name}: status {row['status']} (want {sorted(attack.statuses)}), error {row['error']!r:.300}")
        elif row["status"] == "failed" and attack.reason and not any(r in (row["error"] or "") for r in attack.reason):
            problems.append(f"{attack.name}: error does not say why ({attack.reason}): {row['error']!r:.500}")
        if row["val_accuracy"] is not None and row["val_accuracy"] > 0.2:  # 10 balanced classes: chance is 0.1
            problems.append(f"{attack.name}: scored {row['val_accuracy']} - above chance")
    assert not problems, "\n".join(problems)

    assert server.connections == 0, "a candidate reached the host's loopback server"
    assert not Path("/tmp", marker).exists() and not (package_dir / marker).exists(), "a candidate wrote outside scratch"
    assert rows["seed"]["status"] == "ok" and rows["seed"]["val_accuracy"] > 0.3, rows["seed"]  # 1 epoch; chance 0.1
    assert summary.best is not None and summary.best.candidate_id == rows["seed"]["candidate_id"]
    assert summary.counts["failed"] >= 9 and summary.counts["timeout"] == 1

    # No secret in the recorded errors, anywhere in the history, or in the next prompt.
    everything = _all_history_text(history.path)
    view = HistoryView.from_rows(history.prompt_history(summary.run_id), space.summary, evaluations=summary.evaluations,
                                 budget=summary.budget)
    prompt = "\n".join(m["content"] for m in Prompts().propose_messages(
        history=view, token_budget=100_000, space="code", space_description=space.describe(), task="digits",
        task_description="digits", objectives=["maximise validation accuracy"]))
    assert "read_secrets" in rows and "stolen" in (rows["read_secrets"]["error"] or "")
    for secret in (ENV_SECRET, FILE_SECRET):
        assert secret not in everything
        assert secret not in prompt
    assert "[redacted]" not in (rows["read_secrets"]["error"] or ""), "the sandbox should have hidden the secrets outright"
