"""JSON-lines logging: one object per line with time, level, logger, message and the
record's `extra` facts (topic, partition, offset, reason, ...). Payloads are never
logged; the formatter also masks anything shaped like an email address, in case a
message or fact quotes one."""

from __future__ import annotations

import logging
import re
import sys
import time
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


def configure(level: str = "INFO", path: str | None = None) -> None:
    """JSON lines on stderr, or appended to the file at `path`."""
    handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RepeatFilter(logging.Filter):
    """Collapses repeats: a message seen within the last `window_seconds` is dropped, and
    the next one let through after the window says how many were dropped.

    librdkafka logs every failed connection attempt, several a second per client while a
    broker is unreachable; a log that repeats one line forever hides everything else.
    Messages count as the same when they differ only in their numbers ("after 3ms").
    """

    _NUMBERS = re.compile(r"\d+")
    # librdkafka's own note on a repeat; without it the repeat has the first one's shape.
    _SUPPRESSED = re.compile(r", \d+ identical error\(s\) suppressed")

    def __init__(self, window_seconds: float = 30.0, clock=None) -> None:
        super().__init__()
        self._window = window_seconds
        self._clock = clock or time.monotonic
        # shape -> (time let through, repeats dropped since)
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = self._SUPPRESSED.sub("", record.getMessage())
        shape = (record.levelno, self._NUMBERS.sub("#", text))
        now = self._clock()
        seen = self._seen.get(shape)
        if seen is not None and now - seen[0] < self._window:
            self._seen[shape] = (seen[0], seen[1] + 1)
            return False
        if seen is not None and seen[1]:
            record.repeated = seen[1]  # shown as a fact of the line
        if len(self._seen) > 1000:  # bounded: shapes are few, but messages are free text
            self._seen.clear()
        self._seen[shape] = (now, 0)
        return True
