"""The package's log: one logger, `scorehouse`, whose records are events with fields and a trace id.

    event("resolved", ref="mortgage_deny", model="mortgage_deny", version=3, sha256="…")

Text by default (the message, on stderr); one JSON object per line when SCOREHOUSE_LOG_FORMAT=json,
each with time, level, event, message, trace_id and the event's fields. The trace id is dbt's
invocation_id inside a dbt build (set by the dbt plugin), a new id per `scorehouse` command, and
whatever the caller sets elsewhere (set_trace_id).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from .names import one_line

LOGGER = "scorehouse"
LOG_FORMAT_ENV = "SCOREHOUSE_LOG_FORMAT"
LOG_LEVEL_ENV = "SCOREHOUSE_LOG_LEVEL"
log = logging.getLogger(LOGGER)

_trace_id: str | None = None


def set_trace_id(value: str | None = None) -> str:
    """Tie every later event of this process to `value` (a new id when None); return it."""
    global _trace_id
    _trace_id = str(value) if value else uuid.uuid4().hex
    return _trace_id


def trace_id() -> str:
    return _trace_id or set_trace_id()


def event(name: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `message` for people, `fields` for machines."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={"scorehouse_event": name, "scorehouse_fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": getattr(record, "scorehouse_event", "message"),
            "message": record.getMessage(),
            "trace_id": trace_id(),
            "logger": record.name,
        }
        data.update(getattr(record, "scorehouse_fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """The message (`level: message` for warnings and errors), each line of it kept one line: free text in it
    (a reason, a column name) cannot start a line of its own. The fields are for the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = one_line(record.getMessage())
        if record.levelno < logging.WARNING:
            return message
        return f"{record.levelname.lower()}: {message}"


class _Handler(logging.StreamHandler):
    """The handler configure() adds, marked so that it adds one per process."""

    scorehouse_handler = True


def configure(stream=None) -> None:
    """Send the package's events to `stream` (stderr), once per process, in the format of
    $SCOREHOUSE_LOG_FORMAT ('json' or 'text'). JSON logs every event (debug and up: which version a
    reference resolved to, how it scores and why, rows and seconds); text shows info and up (what a
    command does and warnings). $SCOREHOUSE_LOG_LEVEL (debug, info, warning, error) overrides either."""
    if any(getattr(h, "scorehouse_handler", False) for h in log.handlers):
        return
    json_lines = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower() == "json"
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    log.addHandler(handler)
    level = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    log.setLevel(
        getattr(logging, level)
        if level in ("DEBUG", "INFO", "WARNING", "ERROR")
        else logging.DEBUG
        if json_lines
        else logging.INFO
    )
    log.propagate = False
