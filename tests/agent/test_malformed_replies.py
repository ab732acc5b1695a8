"""LLM output is untrusted input: 1,000 generated replies (truncated JSON, wrong types, huge
strings, unicode, nesting and numbers past the parser's limits, schema-valid but hostile specs,
code that does not parse) go through the parsing both backends share (``parse_reply``) and
through the proposer's judge-and-repair path over a real HTTP endpoint on loopback (the
OpenAI-compatible backend). Nothing crashes, and every reply is recorded with its outcome and,
when it is not valid, the reason."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agent.llm.base import parse_reply
from agent.llm.openai_backend import OpenAIBackend
from agent.prompting import HistoryView
from agent.proposers.base import ProposalContext
from agent.proposers.llm import LLMProposer, proposal_schema
from agent.records import Run
from agent.store import History
from evaluator.errors import SpecError
from evaluator.spaces import get_space
from tests.agent.test_llm_openai import completion, serve  # noqa: F401 - the fixture

SPACES = {"nb201": {}, "layers": {"input_shape": (1, 8, 8), "num_classes": 10},
          "code": {"input_shape": (1, 8, 8), "num_classes": 10}}
HOSTILE_SOURCES = [
    "def build_model(input_shape, num_classes:\n    return None\n",  # does not parse
    "import os\nos.system('echo owned > /tmp/owned')\n\ndef build_model(input_shape, num_classes):\n    return None\n",
    "while True:\n    pass\n",  # would hang whoever ran it: validation must not
    "import subprocess, socket\nsocket.create_connection(('example.com', 80))\n",
    "x = " + "(" * 5000 + ")" * 5000 + "\n",  # nesting the parser refuses
    "\x00\x01binary",
]
STRANGE_TEXT = ["", "   ", "I think a wider network would help.", "```json\n{\"rationale\": \"no spec\"}\n```",
                "null", "[1, 2, 3]", "{", "}{", "{\"rationale\": 1, \"spec\": 2}", "\u202eRTL override \u200b\ufeff",
                "{\"rationale\": \"\\ud800\", \"spec\": {}}"]


def proposal_spec(space, rng: random.Random) -> dict:
    """A valid proposal's spec: a sample (for code mode, a whole new file, which the edits yield to)."""
    spec = space.sample(rng)
    if space.name == "code":
        return {"edits": [{"search": "WIDTH", "replace": "WIDTH"}], "source": spec["source"]}
    return spec


def generated_replies(space, rng: random.Random, n: int) -> list[str]:
    """``n`` replies for ``space``: one valid proposal in eight, the rest broken in every way we know."""
    out = []
    for i in range(n):
        spec = proposal_spec(space, rng)
        good = {"rationale": f"proposal {i}", "spec": spec}
        kind = i % 12
        if kind == 0:
            text = json.dumps(good)
        elif kind == 1:  # truncated
            full = json.dumps(good)
            text = full[:rng.randrange(1, len(full))]
        elif kind == 2:  # wrong types, in the spec and around it
            bad = rng.choice([42, None, [], {"x": 1}, True, "text", 1.5])
            if isinstance(spec, dict) and spec:
                key = rng.choice(sorted(spec))
                text = json.dumps({"rationale": "wrong type", "spec": {**spec, key: bad}})
            else:
                text = json.dumps({"rationale": bad, "spec": bad})
        elif kind == 3:  # huge strings
            huge = "A" * rng.choice([5_000, 100_000, 400_000])
            text = json.dumps({"rationale": huge, "spec": spec} if i % 2 else
                              {"rationale": "huge", "spec": {k: huge for k in (spec or {"x": 0})}})
        elif kind == 4:  # unicode in every field: homoglyphs, emoji, control characters, escapes
            weird = rng.choice(["nor_c\u043env_3x3", "\U0001f600" * 50, "tab\tnew\nline", "\u0000", "\\u0000",
                                "\u202e\u200d"])
            key = rng.choice(sorted(spec)) if isinstance(spec, dict) and spec else "x"
            text = json.dumps({"rationale": weird, "spec": {**spec, key: weird}}, ensure_ascii=bool(i % 2))
        elif kind == 5:  # nesting and numbers past the parser's limits
            text = rng.choice(['{"rationale": "deep", "spec": ' + "[" * 50_000 + "]" * 50_000 + "}",
                               '{"rationale": "big", "spec": ' + "9" * 20_000 + "}",
                               '{"rationale": "inf", "spec": {"a": 1e999}}', "{" * 20_000])
        elif kind == 6:  # extra keys, missing keys
            text = json.dumps({"rationale": "extra", "spec": spec, "admin": True} if i % 2 else {"spec": spec})
        elif kind == 7:  # prose, fences, nothing
            text = rng.choice(STRANGE_TEXT) + (f" ```json\n{json.dumps(good)}\n``` and more" if i % 3 == 0 else "")
        elif kind == 8 and space.name == "code":  # code that does not parse, or that attacks whoever runs it
            text = json.dumps({"rationale": "hostile", "spec": {"edits": [{"search": "a", "replace": "b"}],
                                                                 "source": rng.choice(HOSTILE_SOURCES)}})
        elif kind == 8 and space.name == "layers":  # schema-valid extremes
            extreme = json.loads(json.dumps(spec))
            for stage in extreme.get("stages", []):
                stage.update(channels=max(stage["channels"], 512), depth=max(stage.get("depth", 1), 4))
            text = json.dumps({"rationale": "as large as allowed", "spec": extreme})
        elif kind == 9:  # many objects, the first one broken
            text = "{broken " + json.dumps(good) + json.dumps({"rationale": "second"})
        else:  # schema-valid and fine, or a repeat of an earlier one (a duplicate)
            text = json.dumps(good if kind != 10 else {"rationale": "repeat",
                                                       "spec": proposal_spec(space, random.Random(0))})
        out.append(text)
    return out


@pytest.mark.parametrize("name", sorted(SPACES))
def test_generated_replies_never_crash_the_shared_parser(name):
    space = get_space(name, **SPACES[name])
    schema = proposal_schema(space)
    for text in generated_replies(space, random.Random(7), 200):
        value, error = parse_reply(text, schema)
        assert (value is None) != (error is None)
        if value is not None:
            assert isinstance(value, schema)
        else:
            assert error.startswith(("the reply holds no JSON object", "the JSON does not follow the schema"))


@pytest.mark.slow
def test_a_thousand_generated_replies_through_the_proposer_are_each_recorded_with_a_reason(serve, tmp_path):  # noqa: F811
    total = 0
    for k, name in enumerate(sorted(SPACES)):
        space = get_space(name, **SPACES[name])
        replies = generated_replies(space, random.Random(100 + k), 334 if name != "nb201" else 332)
        queue = list(replies)

        def answer(body, queue=queue):
            return (200, completion(queue.pop(0)), {}, 0)

        server = serve(answer)
        h = History(tmp_path / name)
        h.create_run(Run(run_id="r1", task="digits", space=name, proposer="llm", seed=0, budget=10_000))
        view = lambda ctx, h=h, space=space: HistoryView.from_rows(  # noqa: E731
            h.prompt_history("r1"), space.summary, evaluations=ctx.evaluations, budget=ctx.budget)
        proposer = LLMProposer(space, 0, backend=OpenAIBackend("m", base_url=server.url, timeout=30, max_retries=0),
                               run_id="r1", history=view, record=h.add_llm_calls,
                               task={"task": "digits", "task_description": "8x8 digits, 10 classes",
                                     "objectives": ["maximise validation accuracy"]}, max_repairs=2)
        seen: set[str] = {space.canonical_key(space.sample(random.Random(0)))}
        pad_rng = random.Random(9000 + k)
        proposals = []
        while len(server.requests) < len(replies):
            context = ProposalContext(seen=frozenset(seen), evaluations=len(seen), budget=10_000)
            if len(queue) < 3:  # the last proposal may need every repair: pad with new valid replies
                queue += [json.dumps({"rationale": "pad", "spec": proposal_spec(space, pad_rng)}) for _ in range(3)]
            proposal = proposer.propose_one(context)
            proposals.append(proposal)
            if proposal.error is None:
                spec = space.validate(proposal.spec)  # what a proposal without an error holds is valid
                seen.add(space.canonical_key(spec))
            else:
                with pytest.raises(SpecError):
                    space.validate(proposal.spec)
        calls = h.llm_calls("r1")
        assert len(calls) == len(server.requests) >= len(replies)
        outcomes = {c["outcome"] for c in calls}
        assert outcomes <= {"valid", "schema_invalid", "spec_invalid"} and {"schema_invalid", "valid"} <= outcomes
        for call in calls:
            if call["outcome"] != "valid":
                assert call["error"], call
        assert [c["response"] for c in calls][:len(replies)] == replies  # each recorded as received
        total += len(replies)
    assert total == 1000
    assert not Path("/tmp/owned").exists()  # judging a hostile file never ran it
