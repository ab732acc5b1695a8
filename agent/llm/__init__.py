"""LLM backends behind one interface (``agent.llm.base.LLMBackend``): a structured call that
returns a validated pydantic object and its usage. ``openai``: any OpenAI-compatible endpoint."""

from agent.llm.base import LLMBackend, LLMError, LLMReply, Usage

__all__ = ["LLMBackend", "LLMError", "LLMReply", "Usage"]
