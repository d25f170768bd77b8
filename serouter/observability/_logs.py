"""The log as text (Twisted's format) or as one JSON object per line, for journald and shippers.

A JSON record holds ``time``, ``level``, ``namespace``, ``message`` (the formatted text) and
every field the event was logged with (``session``, ``realm``, ``peer``, ...), so a log shipper
filters on fields instead of parsing text. Fields named like credentials are never written,
whatever a caller passes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from twisted.logger import FileLogObserver, ILogObserver, formatEvent, textFileLogObserver

LOG_FORMATS: Final = ("text", "json")

_REDACTED: Final = frozenset({"ticket", "secret", "password", "signature", "private_key"})
# keys of events from Twisted's legacy log, or what the record sets itself
_SKIPPED: Final = frozenset({"message", "isError", "system", "time", "format", "failure", "why",
                             "level", "namespace", "traceback", "error"})
_DEPTH: Final = 4


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` with only what JSON holds: containers to ``_DEPTH``, everything else as str."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth < _DEPTH and isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item, depth + 1) for item in value]
    if depth < _DEPTH and isinstance(value, dict):
        return {str(k): "<redacted>" if k in _REDACTED else _jsonable(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def json_record(event: dict[str, Any]) -> str:
    """One event as one line of JSON (no newline)."""
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(
            timespec="milliseconds"),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in _SKIPPED:
            continue
        record[key] = "<redacted>" if key in _REDACTED else _jsonable(value)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def json_observer(out: TextIO) -> ILogObserver:
    """Writes each event to ``out`` as one JSON object per line (flushed, like the text one)."""
    return FileLogObserver(out, lambda event: json_record(event) + "\n")


def log_observer(log_format: str, out: TextIO) -> ILogObserver:
    """The observer for ``--log-format``: "text" or "json"."""
    if log_format == "json":
        return json_observer(out)
    return textFileLogObserver(out)
