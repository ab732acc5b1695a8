"""`agent chat`, driven in a real terminal (pexpect) with the offline local model.

The acceptance test asks which candidate is best (the answer must carry the id and the
validation accuracy `agent history --json` reports), gives a direction, asks for a proposal
and approves it, quits, comes back, and finds the conversation and the direction again.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pexpect
import pytest

from agent.chat.session import intent_by_rule, turn_schema
from agent.store import History
from tests.conftest import ROOT, run_cli, child_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(home: Path) -> dict[str, str]:
    env = child_env()
    env.update(AGENT_HOME=str(home), HF_HUB_OFFLINE="1", TERM="xterm", COLUMNS="250")
    return env


def _spawn(home: Path, run_id: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "agent", "chat", "--run", run_id, "--llm", "local"], cwd=str(ROOT),
                         env=_env(home), encoding="utf-8", timeout=600, dimensions=(60, 250))


def _say(child: pexpect.spawn, text: str) -> str:
    """Send one message; return everything the session printed until it asks for the next."""
    child.sendline(text)
    child.expect("you> ")
    return ANSI.sub("", child.before).replace("\r", "")


@pytest.mark.llm
@pytest.mark.slow
def test_a_terminal_session_answers_from_the_history_stores_directions_evaluates_and_resumes(tmp_path, tiny_tables):
    home = tmp_path / "home"
    out = run_cli("search", "--task", "nb201-cifar10", "--benchmark-dir", str(tiny_tables), "--proposer", "evolution",
                  "--budget", "8", "--seed", "2", "--json", home=home)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["run_id"]
    listed = json.loads(run_cli("history", "--run", run_id, "--json", home=home).stdout)["candidates"]
    best = max((c for c in listed if c["status"] == "ok"), key=lambda c: c["val_accuracy"])

    child = _spawn(home, run_id)
    try:
        child.expect("you> ")
        answer = _say(child, "which candidate is best?")
        assert best["candidate_id"] in answer and f"{best['val_accuracy']:.4f}" in answer, answer

        noted = _say(child, "from now on, never use avg_pool_3x3")
        assert 'stored as direction 1: "from now on, never use avg_pool_3x3"' in noted, noted

        for _ in range(3):  # a weak model may repeat an evaluated cell; the session says so and we ask again
            proposal = _say(child, "/propose")
            if "Proposal for review" in proposal:
                break
        assert "Proposal for review" in proposal and "/approve evaluates it" in proposal, proposal
        result = _say(child, "/approve")
        match = re.search(rf"Evaluated ({re.escape(run_id)}-c\d{{4}}): ok, validation accuracy (0\.\d{{4}})", result)
        assert match, result
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)

    history = History(home)
    approved = history.get_candidate(match.group(1))
    assert approved["proposer"] == "chat:llm" and approved["status"] == "ok"
    assert f"{approved['evaluations'][0]['val_accuracy']:.4f}" == match.group(2)
    assert history.directions(run_id) == ["from now on, never use avg_pool_3x3"]
    # the direction reached the prompt of the proposal made after it
    prompts = [c for c in history.llm_calls(run_id) if c["template"] == "propose.j2"]
    assert prompts and all("never use avg_pool_3x3" in json.dumps(c["messages"]) for c in prompts)
    chat_calls = [c for c in history.llm_calls(run_id) if c["template"] == "chat.j2"]
    assert len(chat_calls) == 2 and all(c["outcome"] == "valid" for c in chat_calls)

    child = _spawn(home, run_id)  # come back: the same conversation, the direction still there
    try:
        child.expect("you> ")
        earlier = ANSI.sub("", child.before).replace("\r", "")
        assert "the conversation so far (8 messages)" in earlier and "which candidate is best?" in earlier
        assert "directions: from now on, never use avg_pool_3x3" in earlier
        assert "1. from now on, never use avg_pool_3x3" in _say(child, "/directions")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    runs = json.loads(run_cli("history", "--json", home=home).stdout)["runs"]
    assert runs[0]["evaluations"] == 9  # the approved candidate is one more evaluation of the run


def test_unambiguous_phrasings_fix_the_intent_the_model_may_write():
    assert intent_by_rule("which candidate is best?") == "best"
    assert intent_by_rule("keep it under 1 ms") == "direction"
    assert intent_by_rule("never use attention") == "direction"
    assert intent_by_rule("try depthwise convolutions") == "direction"
    assert intent_by_rule("please propose a new cell") == "propose"
    assert intent_by_rule("why did c0003 fail?") == "candidate"
    assert intent_by_rule("how far along is it?") == "status"
    assert intent_by_rule("thanks") is None
    schema = turn_schema("direction").model_json_schema()
    assert schema["properties"]["intent"]["const"] == "direction"
    assert turn_schema(None).model_json_schema()["properties"]["intent"]["enum"][0] == "best"


@pytest.mark.slow
def test_slash_commands_read_and_write_the_history_without_the_model(tmp_path, tiny_tables):
    from agent.chat.session import ChatContext, ChatSession
    from agent.engine.runner import run_search
    from agent.config import Settings

    home = tmp_path / "home"
    summary = run_search(Settings(home=home, task="nb201-cifar10", benchmark_dir=tiny_tables, proposer="random",
                                  budget=5, seed=4))

    def no_model():
        raise AssertionError("a slash command must not need the model")

    def session() -> ChatSession:
        return ChatSession(home, ChatContext(history=History(home), run_id=summary.run_id, llm=no_model,
                                             tools=no_model))

    chat = session()
    best = summary.best
    assert f"1. {best.candidate_id} (ok), validation accuracy {best.val_accuracy:.4f}" in chat.send("/best 2")
    assert "is done: 5 of 5 evaluations (5 ok)" in chat.send("/status")
    assert "There is no proposal under review" in chat.send("/approve")
    assert "no proposal under review to edit" in chat.send("/edit {}")
    assert "Give the direction" in chat.send("/direct")
    assert 'Stored as direction 1: "prefer 3x3 convolutions"' in chat.send("/direct prefer 3x3 convolutions")
    assert "0 calls" in chat.send("/budget") and f"--resume {summary.run_id}" in chat.send("/budget")
    assert "Unknown command /frobnicate" in chat.send("/frobnicate")
    chat.close()
    again = session()  # the checkpointer kept the conversation
    assert [m["content"] for m in again.messages if m["role"] == "user"][:2] == ["/best 2", "/status"]
    assert again.send("/directions") == "1. prefer 3x3 convolutions"
    again.close()
    assert History(home).directions(summary.run_id) == ["prefer 3x3 convolutions"]
