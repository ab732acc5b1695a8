"""The openai backend against an OpenAI-compatible HTTP server started on loopback by the test.

The server is a test double at the one boundary these tests cannot reach (a remote API): it
speaks the chat-completions protocol and is scripted per test to behave like OpenAI (json_schema),
like llama.cpp's server (json_object + schema, json_schema refused), or badly (malformed replies,
rate limits, silence)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from agent.llm.base import LLMError, extract_json_object, parse_reply
from agent.llm.openai_backend import OpenAIBackend


class Proposal(BaseModel):
    rationale: str = Field(max_length=200)
    op: Literal["conv", "skip", "pool"]
    width: int = Field(ge=8, le=64)


GOOD = {"rationale": "wider convs helped", "op": "conv", "width": 32}


def completion(content: str) -> dict:
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


class Server:
    """Answers each POST with the next scripted (status, body, headers, delay); records requests."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body})
                step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                status, payload, headers, delay = step(body) if callable(step) else step
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        servers.append(Server(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def ok(content, **headers):
    return (200, completion(content), headers, 0)


def backend(server, **kw):
    return OpenAIBackend("m", api_key="sk-test", base_url=server.url, timeout=kw.pop("timeout", 5), backoff=0.01, **kw)


MESSAGES = [{"role": "system", "content": "You design networks."}, {"role": "user", "content": "Propose one."}]


def test_json_schema_mode(serve):
    server = serve(ok(json.dumps(GOOD)))
    reply = backend(server, price_in=1.0, price_out=2.0).complete(MESSAGES, Proposal)
    assert reply.value == Proposal(**GOOD) and reply.mode == "json_schema" and reply.schema_valid
    fmt = server.requests[0]["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["properties"]["op"]["enum"] == ["conv", "skip", "pool"]
    assert (reply.usage.tokens_in, reply.usage.tokens_out, reply.usage.retries) == (11, 7, 0)
    assert reply.usage.cost == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6) and reply.usage.seconds > 0
    assert server.requests[0]["path"] == "/v1/chat/completions" and server.requests[0]["body"]["model"] == "m"


def llama_cpp(body):
    """Like llama.cpp's server: json_schema is refused, json_object with a schema is accepted."""
    fmt = body.get("response_format", {})
    if fmt.get("type") == "json_schema":
        return 400, {"error": {"message": "response_format type 'json_schema' is not supported", "code": 400}}, {}, 0
    assert fmt == {"type": "json_object", "schema": Proposal.model_json_schema()}
    assert "JSON schema" in body["messages"][0]["content"]  # the schema is in the prompt too
    return 200, completion(json.dumps(GOOD)), {}, 0


def test_json_object_with_schema_when_json_schema_is_refused_and_remembered(serve):
    server = serve(llama_cpp)
    b = backend(server)
    first = b.complete(MESSAGES, Proposal)
    assert first.value == Proposal(**GOOD) and first.mode == "json_object" and "json_schema" in first.notes[0]
    assert first.sent == server.requests[-1]["body"]["messages"] and "JSON schema" in first.sent[0]["content"]
    second = b.complete(MESSAGES, Proposal)  # no second try of json_schema
    assert second.mode == "json_object" and not second.notes and len(server.requests) == 3


def test_text_mode_extracts_the_object_from_prose(serve):
    refuse = (400, {"error": {"message": "unknown field response_format"}}, {}, 0)
    server = serve(refuse, refuse, ok("Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nGood luck!"))
    reply = backend(server).complete(MESSAGES, Proposal)
    assert reply.mode == "text" and reply.value == Proposal(**GOOD)
    assert "response_format" not in server.requests[-1]["body"]


@pytest.mark.parametrize("content, words", [
    ("I think a conv would be nice", ["no JSON object"]),
    ('{"rationale": "x", "op": "attention", "width": 4}', ["op:", "width:"]),
    ('{"rationale": "x", "op": "conv", "width": 3', ["no JSON object"]),
], ids=["prose", "off-schema", "truncated"])
def test_a_malformed_reply_comes_back_unparsed_with_the_reason(serve, content, words):
    reply = backend(serve(ok(content))).complete(MESSAGES, Proposal)
    assert reply.value is None and not reply.schema_valid and reply.text == content
    for w in words:
        assert w in reply.error


def test_rate_limit_then_success_is_retried(serve):
    limited = (429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"Retry-After": "0"}, 0)
    server = serve(limited, (503, {"error": {"message": "overloaded"}}, {}, 0), ok(json.dumps(GOOD)))
    reply = backend(server).complete(MESSAGES, Proposal)
    assert reply.value == Proposal(**GOOD) and reply.usage.retries == 2 and len(server.requests) == 3


def test_a_timeout_is_retried_then_reported(serve):
    server = serve((200, completion(json.dumps(GOOD)), {}, 3.0))
    start = time.monotonic()
    with pytest.raises(LLMError) as err:
        backend(server, timeout=0.5, max_retries=1).complete(MESSAGES, Proposal)
    assert "did not answer within 0.5 s, 2 attempt(s)" in str(err.value) and server.url in str(err.value)
    assert time.monotonic() - start < 5 and len(server.requests) == 2


def test_a_dead_endpoint_bad_key_and_unknown_model_say_what_to_fix(serve):
    with pytest.raises(LLMError, match="could not be reached"):
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", timeout=1, max_retries=1, backoff=0.01).complete(MESSAGES, Proposal)
    with pytest.raises(LLMError) as err:
        backend(serve((401, {"error": {"message": "Incorrect API key provided"}}, {}, 0))).complete(MESSAGES, Proposal)
    assert "rejected the API key" in str(err.value) and "OPENAI_API_KEY" in str(err.value)
    with pytest.raises(LLMError) as err:
        backend(serve((404, {"error": {"message": "The model `m` does not exist"}}, {}, 0))).complete(MESSAGES, Proposal)
    assert "model 'm' is not served" in str(err.value) and "--model" in str(err.value)
    with pytest.raises(LLMError, match="no model named"):
        OpenAIBackend("", base_url="http://127.0.0.1:9/v1")


def test_json_extraction_and_parsing():
    assert extract_json_object('{"a": 1}') == '{"a": 1}'
    assert extract_json_object('x {"a": {"b": [1, "}"]}} y {"c": 2}') == '{"a": {"b": [1, "}"]}}'
    assert extract_json_object("[1, 2] then {bad then {\"ok\": true}") == '{"ok": true}'
    assert extract_json_object("nothing here") is None
    value, error = parse_reply(json.dumps(GOOD), Proposal)
    assert value == Proposal(**GOOD) and error is None


def test_settings_build_the_backend_and_never_show_the_key(serve, tmp_path):
    from agent.config import load_settings
    from agent.llm import make_backend

    server = serve(ok(json.dumps(GOOD)))
    resolved = load_settings({"llm": "openai", "model": "m", "llm_price_in": 1.0, "llm_price_out": 1.0},
                             env={"OPENAI_API_KEY": "sk-very-secret", "OPENAI_BASE_URL": server.url}, cwd=tmp_path)
    assert resolved.sources["openai_api_key"] == "env OPENAI_API_KEY"
    assert "sk-very-secret" not in json.dumps(resolved.settings.model_dump(mode="json")) + repr(resolved.settings)
    reply = make_backend(resolved.settings).complete(MESSAGES, Proposal)
    assert reply.value == Proposal(**GOOD) and reply.usage.cost == pytest.approx(18 / 1e6)
    env = {"AGENT_OPENAI_API_KEY": "sk-agent", "OPENAI_API_KEY": "sk-generic"}
    assert load_settings({}, env=env, cwd=tmp_path).settings.openai_api_key.get_secret_value() == "sk-agent"
    from evaluator.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a model name"):
        make_backend(load_settings({"llm": "openai"}, env={}, cwd=tmp_path).settings)
    with pytest.raises(ConfigError, match="no LLM backend configured"):
        make_backend(load_settings({}, env={}, cwd=tmp_path).settings)


def test_credentials_in_the_endpoint_url_are_never_stored_or_shown(tmp_path):
    """Endpoints are often given as https://user:key@host/v1 or ...?api_key=KEY: the run's config
    (settings.model_dump, what the history stores) and the errors show the URL without them."""
    from agent.config import load_settings, public_url

    assert public_url("https://user:pw-secret@example.test:8443/v1?api_key=q-secret&x=1#frag") == \
        "https://***@example.test:8443/v1?api_key=***&x=***"
    assert public_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    url = "http://u:pw-secret@127.0.0.1:9/v1?key=q-secret"
    settings = load_settings({"llm": "openai", "model": "m"}, env={"OPENAI_BASE_URL": url}, cwd=tmp_path).settings
    assert settings.openai_base_url == url  # the client still gets the whole URL
    stored = json.dumps(settings.model_dump(mode="json"))
    assert "secret" not in stored and "http://***@127.0.0.1:9/v1?key=***" in stored
    with pytest.raises(LLMError) as err:
        OpenAIBackend("m", base_url=url, timeout=1, max_retries=1, backoff=0.01).complete(MESSAGES, Proposal)
    assert "could not be reached" in str(err.value) and "secret" not in str(err.value) + str(err.value.hint)
