"""DuckDB values as JSON values, for ``agent sql --json`` / ``--csv`` and ``agent.sql()``.

History times are naive UTC (schema.py): they become ISO 8601 with a ``Z``; zoned times are
shown in UTC. JSON columns are parsed; lists and structs are converted element by element;
DECIMAL becomes a float, INTERVAL its length in seconds, UUID a string, BLOB hex text, and
NaN or infinite floats ``null`` (JSON has no such numbers).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID


def json_value(value: Any, type_name: str = "") -> Any:
    """``value`` of a column of DuckDB type ``type_name`` (as text) as a JSON-safe value."""
    if value is None:
        return None
    if type_name == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return json_value(float(value))
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        element = type_name[:-2] if type_name.endswith("[]") else ""
        return [json_value(v, element) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def json_rows(types: list[str], rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [[json_value(v, t) for v, t in zip(row, types)] for row in rows]


def cell_text(value: Any) -> str:
    """A JSON-safe value as one CSV or table cell: JSON text for lists, objects and booleans; '' for null."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
