"""What a job's process sees of the trusted process's environment: only an allowlist of
variables (``clean_env``), never a secret (``without_secret_names``), and no secret value in the
log lines the trusted side keeps (``redact``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

# Only these variables reach the child; everything else (API keys, tokens, proxies, cloud
# credentials) stays out. Values are copied from the parent when set there.
ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                 "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


def clean_env(extra: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["HOME"] = str(home)
        env["TMPDIR"] = str(home)
    env.update(extra or {})
    return env


# The values of the trusted process's variables with these in their names never reach a kept
# log line (``redact``), and with an Isolation such names never reach the job's environment.
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION")


REDACTED = "[redacted]"


MIN_SECRET_CHARS = 6


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if looks_secret(k) and len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)


def redact_with(text: str, values: Sequence[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """``text`` with the value of every secret-looking variable of this (trusted) process's
    environment (names with KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, AUTH, COOKIE or
    SESSION; values of 6 characters or more) replaced by "[redacted]"."""
    return redact_with(text, secret_values())


def without_secret_names(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not looks_secret(k) and not re.search(r"(^|_)PROXY$", k, re.IGNORECASE)}
