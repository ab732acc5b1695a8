"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server) through ``openai``.

Structured output, best first, remembering per backend what the endpoint accepted:

1. ``json_schema``: the endpoint enforces the schema (OpenAI, vLLM, recent Ollama).
2. ``json_object`` with the schema beside it (llama.cpp's server: it rejects ``json_schema``
   and constrains to the ``schema`` it is given), and the schema in the prompt.
3. ``text``: the schema in the prompt; the first JSON object in the reply is extracted and
   validated.

A 400 that names the response format moves to the next mode. Rate limits (429), server
errors (5xx), timeouts and dropped connections are retried with exponential back-off (a
``Retry-After`` header is honoured, capped); a bad key, an unknown model, or an endpoint
still failing after the retries raise :class:`~agent.llm.base.LLMError` with the fix.
"""

from __future__ import annotations

import random
import time
from typing import Any

from agent.config import public_url
from agent.llm.base import LLMBackend, LLMError, LLMReply, T, Usage, parse_reply, schema_instructions

MODES = ("json_schema", "json_object", "text")
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 120.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 30.0,
                 price_in: float | None = None, price_out: float | None = None, mode: str | None = None) -> None:
        """``price_in`` / ``price_out``: dollars per million tokens (cost is recorded when both are set).
        ``mode`` forces a structured-output mode; by default the best one the endpoint accepts."""
        import openai

        if not model:
            raise LLMError("no model named for the openai backend",
                           hint="pass --model (for example gpt-4o-mini, or the name your server serves)")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode={mode!r} must be one of {MODES}")
        # self.base_url is what messages name: without the credentials an endpoint's URL may carry
        self.model, self.base_url = model, public_url(base_url or "https://api.openai.com/v1")
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.price_in, self.price_out = price_in, price_out
        self._modes = list(MODES[MODES.index(mode):] if mode else MODES)
        self._openai = openai
        # The key may be empty for local servers that ignore it; the client insists on a value.
        self.client = openai.OpenAI(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=0)
        self.timeout = timeout

    @property
    def mode(self) -> str:
        """The structured-output mode the next call starts with."""
        return self._modes[0]

    def complete(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int = 1024,
                 temperature: float = 0.7, seed: int | None = None) -> LLMReply[T]:
        usage, notes = Usage(), []
        started = time.monotonic()
        while True:
            mode = self._modes[0]
            try:
                response, sent = self._call(messages, schema, mode, max_tokens, temperature, seed, usage)
                break
            except self._openai.BadRequestError as exc:
                if _names_response_format(exc) and len(self._modes) > 1:
                    notes.append(f"the endpoint refused response_format {mode}: {_message(exc)[:200]}")
                    self._modes.pop(0)  # remembered for later calls
                    continue
                raise LLMError(f"the endpoint at {self.base_url} rejected the request: {_message(exc)[:500]}",
                               hint="check --model and the server's options; run again with --debug") from None
        usage.seconds = time.monotonic() - started
        text = (response.choices[0].message.content or "") if response.choices else ""
        if response.usage is not None:
            usage.tokens_in, usage.tokens_out = response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0
        if self.price_in is not None and self.price_out is not None:
            usage.cost = (usage.tokens_in * self.price_in + usage.tokens_out * self.price_out) / 1e6
        value, error = parse_reply(text, schema)
        return LLMReply(value=value, text=text, usage=usage, mode=mode, error=error, notes=notes, sent=sent)

    # -- one request, with retries ---------------------------------------------------------

    def _call(self, messages, schema, mode, max_tokens, temperature, seed, usage: Usage) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            kwargs["seed"] = seed
        schema_json = schema.model_json_schema()
        if mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": schema.__name__, "schema": schema_json, "strict": False}}
        else:
            messages = _with_instructions(messages, schema_instructions(schema))
            if mode == "json_object":
                kwargs["response_format"] = {"type": "json_object", "schema": schema_json}
        kwargs["messages"] = messages
        o = self._openai
        for attempt in range(self.max_retries + 1):
            try:
                return self.client.chat.completions.create(**kwargs), messages
            except o.AuthenticationError:
                raise LLMError(f"the endpoint at {self.base_url} rejected the API key",
                               hint="set OPENAI_API_KEY (or openai_api_key in agent.toml) to a valid key") from None
            except o.PermissionDeniedError as exc:
                raise LLMError(f"the endpoint at {self.base_url} refused access: {_message(exc)[:300]}",
                               hint="check that the key may use this model") from None
            except o.NotFoundError as exc:
                raise LLMError(f"model {self.model!r} is not served at {self.base_url}: {_message(exc)[:300]}",
                               hint=f"pass --model with a model the endpoint serves (GET {self.base_url}/models lists them)") from None
            except (o.APITimeoutError, o.APIConnectionError, o.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if isinstance(exc, o.APIStatusError) and status not in RETRY_STATUS:
                    raise
                if attempt == self.max_retries:
                    raise LLMError(_give_up(exc, self.base_url, self.timeout, attempt + 1),
                                   hint="check OPENAI_BASE_URL and that the server is up; raise the timeout for slow models") from None
                usage.retries += 1
                time.sleep(self._delay(attempt, exc))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, exc: Exception) -> float:
        response = getattr(exc, "response", None)
        after = response.headers.get("retry-after") if response is not None else None
        if after is not None:
            try:
                return min(max(0.0, float(after)), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2 ** attempt, self.max_backoff) * (0.5 + random.random() / 2)


def _with_instructions(messages: list[dict[str, str]], instructions: str) -> list[dict[str, str]]:
    if messages and messages[0].get("role") == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instructions}, *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc)


def _names_response_format(exc: Exception) -> bool:
    text = _message(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "response format", "grammar"))


def _give_up(exc: Exception, base_url: str, timeout: float, attempts: int) -> str:
    status = getattr(exc, "status_code", None)
    if status is not None:
        what = f"answered {status} ({_message(exc)[:200]})"
    elif type(exc).__name__ == "APITimeoutError":
        what = f"did not answer within {timeout:g} s"
    else:
        what = f"could not be reached ({exc})"
    return f"the endpoint at {base_url} {what}, {attempts} attempt(s)"
