"""1,000 malformed LLM replies through the proposer: none crashes, each is recorded with its reason.

The replies are the ones tests/agent/test_malformed_replies.py generates (truncated JSON, wrong
types, strings up to 400 KB, unicode and control characters, nesting and numbers past the
parser's limits, extra and missing keys, prose, several objects, schema-valid extremes, hostile
code), a third for each space (nb201, layers, code). Each is served by an OpenAI-compatible
endpoint on loopback to the LLM proposer, which parses it (the parsing both backends share),
judges it against the space and asks for a repair at most twice. Printed per kind of reply: how
many, the outcomes recorded in the history's llm_calls, how many were recorded without a reason
(must be 0), how many crashed the proposer (must be 0), and the median seconds per call.

    python bench/malformed_replies.py
"""

from __future__ import annotations

import argparse
import http.server
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the generator lives beside its test

from _doc import REPO_ROOT, publish, run_info  # noqa: E402
from agent.llm.openai_backend import OpenAIBackend  # noqa: E402
from agent.prompting import HistoryView  # noqa: E402
from agent.proposers.base import ProposalContext  # noqa: E402
from agent.proposers.llm import LLMProposer  # noqa: E402
from agent.records import Run  # noqa: E402
from agent.store import History  # noqa: E402
from evaluator.spaces import get_space  # noqa: E402
from tests.agent.test_malformed_replies import SPACES, generated_replies, proposal_spec  # noqa: E402

KINDS = ["valid", "truncated", "wrong types", "huge strings", "unicode and control characters",
         "nesting and numbers past the limits", "extra or missing keys", "prose, fences, nothing",
         "hostile code / schema-valid extremes", "several objects, the first broken", "a repeat (duplicate)",
         "valid"]


class Endpoint:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answering with the next queued reply."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.served = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                content = outer.queue.pop(0)
                outer.served += 1
                body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": content}}],
                                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def run_space(name: str, k: int, n: int, home: Path, rows: dict, crashes: list[str]) -> None:
    space = get_space(name, **SPACES[name])
    replies = generated_replies(space, random.Random(100 + k), n)
    endpoint = Endpoint()
    endpoint.queue = list(replies)
    h = History(home / name)
    h.create_run(Run(run_id="r1", task="digits", space=name, proposer="llm", seed=0, budget=10_000))
    view = lambda ctx: HistoryView.from_rows(h.prompt_history("r1"), space.summary,  # noqa: E731
                                             evaluations=ctx.evaluations, budget=ctx.budget)
    proposer = LLMProposer(space, 0, backend=OpenAIBackend("m", base_url=endpoint.url, timeout=30, max_retries=0),
                           run_id="r1", history=view, record=h.add_llm_calls,
                           task={"task": "digits", "task_description": "8x8 digits, 10 classes",
                                 "objectives": ["maximise validation accuracy"]}, max_repairs=2)
    seen = {space.canonical_key(space.sample(random.Random(0)))}
    pad = random.Random(9000 + k)
    times: list[float] = []
    try:
        while endpoint.served < len(replies):
            if len(endpoint.queue) < 3:  # the last proposal may need every repair: valid replies after it
                endpoint.queue += [json.dumps({"rationale": "pad", "spec": proposal_spec(space, pad)}) for _ in range(3)]
            before, start = endpoint.served, time.perf_counter()
            try:
                proposal = proposer.propose_one(ProposalContext(seen=frozenset(seen), evaluations=len(seen),
                                                                budget=10_000))
            except Exception as exc:  # noqa: BLE001 - what the bench counts
                crashes.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                continue
            calls = endpoint.served - before
            times += [(time.perf_counter() - start) / max(1, calls)] * calls
            if proposal.error is None:
                seen.add(space.canonical_key(space.validate(proposal.spec)))
    finally:
        endpoint.close()
    calls = h.llm_calls("r1")[:len(replies)]
    for i, (reply, call) in enumerate(zip(replies, calls)):
        kind = KINDS[i % 12] if not (i % 12 == 8 and name == "nb201") else KINDS[11]
        row = rows[kind]
        row["replies"] += 1
        row["outcomes"][call["outcome"]] += 1
        row["no_reason"] += call["outcome"] != "valid" and not call["error"]
        row["not_as_received"] += call["response"] != reply
        row["times"].append(times[i] if i < len(times) else 0.0)
    rows["(all)"]["missing"] += len(replies) - len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: dict = defaultdict(lambda: {"replies": 0, "outcomes": Counter(), "no_reason": 0, "not_as_received": 0,
                                      "times": [], "missing": 0})
    crashes: list[str] = []
    per = [args.replies // 3 + (1 if i < args.replies % 3 else 0) for i in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, n) in enumerate(zip(sorted(SPACES), per)):
            run_space(name, k, n, Path(tmp), rows, crashes)
    info = run_info(REPO_ROOT, started)
    lines = ["## 1,000 malformed LLM replies through the proposer (bench/malformed_replies.py)", "",
             *info.bullets()[:3], "",
             "| reply | replies | valid | schema_invalid | spec_invalid | recorded without a reason | "
             "recorded altered | median ms per call |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    total = {"replies": 0, "no_reason": 0, "not_as_received": 0, "outcomes": Counter(), "times": []}
    for kind in dict.fromkeys(KINDS):
        r = rows.get(kind)
        if not r or not r["replies"]:
            continue
        o = r["outcomes"]
        lines.append(f"| {kind} | {r['replies']} | {o['valid']} | {o['schema_invalid']} | {o['spec_invalid']} | "
                     f"{r['no_reason']} | {r['not_as_received']} | {1000 * statistics.median(r['times']):.1f} |")
        for key in ("replies", "no_reason", "not_as_received"):
            total[key] += r[key]
        total["outcomes"].update(o)
        total["times"] += r["times"]
    o = total["outcomes"]
    lines.append(f"| **all** | {total['replies']} | {o['valid']} | {o['schema_invalid']} | {o['spec_invalid']} | "
                 f"{total['no_reason']} | {total['not_as_received']} | {1000 * statistics.median(total['times']):.1f} |")
    lines += ["", f"Proposer crashes: {len(crashes)}. Replies not recorded: {rows['(all)']['missing']}. "
              f"A hostile file run by the trusted process: {'yes' if Path('/tmp/owned').exists() else 'no'}."]
    publish("malformed_replies", "\n".join(lines), write=not args.no_write)
    for c in crashes:
        print("CRASH:", c, file=sys.stderr)
    bad = crashes or total["no_reason"] or total["not_as_received"] or rows["(all)"]["missing"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
