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

_DIGITS = re.compile(r"\d+")
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


class RepeatFilter(logging.Filter):
    """Lets a message through once per `window_seconds`, counting what it held back.
    librdkafka logs every failed connection attempt to every broker (dozens of lines a
    second when the brokers are down); one line per kind and window says as much.
    Messages of one kind differ only in their numbers (ports, milliseconds, counts)."""

    def __init__(self, window_seconds: float = 30.0) -> None:
        super().__init__()
        self._window = window_seconds
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = _DIGITS.sub("#", record.getMessage())[:300]
        now = time.monotonic()
        last, held = self._last.get(kind, (None, 0))
        if last is not None and now - last < self._window:
            self._last[kind] = (last, held + 1)
            return False
        if held:
            record.repeated = held  # shown as a fact of the line that gets through
        self._last[kind] = (now, 0)
        return True


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # librdkafka's logs reach Python through the client logger of consumer.kafka_io.
    kafka_client_log = logging.getLogger("consumer.kafka_io")
    kafka_client_log.filters[:] = [RepeatFilter()]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
