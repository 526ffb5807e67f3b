"""JSON-lines logging: one object per line with time, level, logger, message and the
record's `extra` facts (topic, partition, offset, reason, ...). Payloads are never
logged; the formatter also masks anything shaped like an email address, in case a
message or fact quotes one."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

_EMAIL = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[A-Za-z]{2,}")
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def _mask(text: str) -> str:
    return _EMAIL.sub("<email>", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = _mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = _mask(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
