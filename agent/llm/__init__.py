"""LLM backends behind one interface (``agent.llm.base.LLMBackend``): a structured call that
returns a validated pydantic object and its usage. ``openai``: any OpenAI-compatible endpoint;
``local``: an open model in-process with grammar-constrained decoding."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent.llm.base import LLMBackend, LLMError, LLMReply, Usage
from evaluator.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import Settings

__all__ = ["LLMBackend", "LLMError", "LLMReply", "Usage", "default_model_cache", "make_backend"]


def default_model_cache() -> Path:
    """One cache per user, shared by every AGENT_HOME: a converted model is large."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "archagent" / "models"


def make_backend(settings: "Settings") -> LLMBackend:
    """The backend the settings name (``llm``, ``model``, ``openai_*``, ``llm_*``)."""
    if settings.llm == "openai":
        from agent.llm.openai_backend import OpenAIBackend

        if not settings.model:
            raise ConfigError("llm = openai needs a model name",
                              hint="pass --model NAME (for example gpt-4o-mini, or the model your server serves)")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIBackend(settings.model, api_key=key, base_url=settings.openai_base_url, timeout=settings.llm_timeout,
                             price_in=settings.llm_price_in, price_out=settings.llm_price_out)
    if settings.llm == "local":
        return _local_backend(settings.model, settings.model_cache or default_model_cache())
    raise ConfigError("no LLM backend configured", hint="set llm to local or openai (flag, AGENT_LLM or agent.toml)")


@functools.lru_cache(maxsize=2)
def _local_backend(model: str | None, cache_dir: Path) -> LLMBackend:
    """One loaded copy of a local model per process: searches in one process (benchmarks, chat
    sessions, loops) share it instead of loading it again."""
    from agent.llm.local_backend import LocalBackend

    return LocalBackend(model, cache_dir=cache_dir)
