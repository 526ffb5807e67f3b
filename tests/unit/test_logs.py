"""JSON-lines logs: facts as fields, and no clear-text email in any of them."""

from __future__ import annotations

import logging

import orjson

from consumer.logs import JsonFormatter


def format_record(message: str, *args, exc_info=None, **extra) -> dict:
    record = logging.LogRecord("consumer.test", logging.INFO, __file__, 1, message, args, exc_info)
    for name, value in extra.items():
        setattr(record, name, value)
    return orjson.loads(JsonFormatter().format(record))


def test_a_line_carries_level_logger_message_and_the_facts():
    line = format_record("record rejected", topic="raw", partition=2, offset=41, reason="x")
    assert line["level"] == "INFO"
    assert line["logger"] == "consumer.test"
    assert line["message"] == "record rejected"
    assert (line["topic"], line["partition"], line["offset"], line["reason"]) == ("raw", 2, 41, "x")
    assert line["time"].endswith("+00:00")


def test_emails_are_masked_in_messages_facts_and_tracebacks():
    try:
        raise ValueError("bad address Jane.Doe@Example.com")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    line = format_record(
        "customer %s", "jane@example.com", error="from bob@shop.example", exc_info=exc_info
    )
    text = orjson.dumps(line).decode()
    assert "@" not in text.replace("<email>", "")
    assert line["message"] == "customer <email>"
    assert line["error"] == "from <email>"
