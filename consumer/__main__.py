"""loyalty-consumer: turns raw loyalty-redemption webhooks on a Kafka topic into clean,
typed Avro records.

  run        the service: settings from the environment (KAFKA_BOOTSTRAP_SERVERS, ...)
  normalize  the same pipeline on webhook files, one JSON line each, no Kafka
  local      the service on a local broker, fed with sample webhooks (a first look)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from consumer import __version__, logs
from consumer.config import Settings
from consumer.errors import ConfigError, KafkaFailure, LoyaltyConsumerError
from consumer.pipeline import Pipeline
from consumer.records import Accepted, Ignored, RawRecord, iso_utc

log = logging.getLogger("consumer")

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2

RUN_HELP = """Run the service until SIGTERM or Ctrl-C. Settings come from the environment:

  KAFKA_BOOTSTRAP_SERVERS          brokers (required)
  LOYALTY_RAW_TOPIC                raw webhooks to consume (loyalty.webhooks.raw)
  LOYALTY_CLEAN_TOPIC              canonical records (loyalty.redemptions)
  LOYALTY_DLQ_TOPIC                rejected records (loyalty.webhooks.dlq)
  LOYALTY_GROUP_ID                 consumer group (loyalty-consumer)
  <PROVIDER>_WEBHOOK_SECRET        signing secrets, comma-separated (MAGE_LOYALTY_, RIVO_)
  SCHEMA_REGISTRY_URL              Confluent wire format through this registry
  LOYALTY_METRICS_PORT             /metrics, /healthz, /readyz (9400)
  LOYALTY_SCHEMA_DIR               .avsc files to use instead of the packaged ones
  KAFKA_<PROP>, KAFKA_CONSUMER_<PROP>, KAFKA_PRODUCER_<PROP>
                                   any librdkafka property (KAFKA_SECURITY_PROTOCOL=SASL_SSL)

  LOYALTY_PROCESSING_GUARANTEE     at-least-once (default) or exactly-once
  LOYALTY_MEMBER_NAME              this member's name, unique in the group (host name)
  LOYALTY_STATIC_MEMBERSHIP        true: the member name is the static group.instance.id
  LOYALTY_CHECKPOINT_INTERVAL_MS   exactly-once: longest time between commits (1000)

Exit status: 0 stopped cleanly, 1 stopped on an error, 2 bad settings,
3 the shutdown deadline passed, 4 the final commit failed (the next owner re-reads
what was not committed), 5 fenced by a newer member with the same name
(exactly-once)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loyalty-consumer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings: LOYALTY_* and KAFKA_* environment variables; "
        "`loyalty-consumer run --help` lists them.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="run the service (settings from the environment)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=RUN_HELP,
    )
    normalize = commands.add_parser(
        "normalize", help="run the pipeline on raw webhook files and print one JSON line each"
    )
    normalize.add_argument(
        "files", nargs="*", help="raw webhook bodies; '-' or none reads standard input"
    )
    normalize.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a webhook header applied to every input (repeatable)",
    )
    local = commands.add_parser(
        "local",
        help="the service against KAFKA_BOOTSTRAP_SERVERS or, when unset, a local broker; "
        "feeds sample webhooks and prints what comes out",
    )
    local.add_argument("--no-samples", action="store_true", help="do not feed sample webhooks")
    args = parser.parse_args(argv)

    try:
        if args.command == "normalize":
            return _normalize(args.files, args.header, parser)
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        if args.command == "run":
            from consumer.service import run_service

            run_service(settings)
        else:
            from consumer.dev.local_job import run_local

            run_local(settings, feed_samples=not args.no_samples)
    except ConfigError as exc:
        print(f"loyalty-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KafkaFailure as exc:
        log.error("service stopped", extra={"error": str(exc), "exit_status": exc.exit_status})
        return exc.exit_status
    except LoyaltyConsumerError as exc:
        log.error("service stopped", extra={"error": str(exc)})
        return 1
    except Exception:
        # A bug: stop loudly, but through the JSON formatter (and its masking).
        log.exception("service crashed")
        return 1
    return EXIT_OK


def _normalize(files: list[str], header_args: list[str], parser: argparse.ArgumentParser) -> int:
    headers = []
    for item in header_args:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--header expects NAME=VALUE, got {item!r}")
        headers.append((name, value.encode()))
    settings = Settings.from_env()
    pipeline = Pipeline.from_settings(settings)

    status = EXIT_OK
    for name in files or ["-"]:
        # '-' is standard input, as for most Unix tools. A file that cannot be read is
        # reported and skipped: the others still get their line (exit status 2 at the end).
        try:
            value = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"loyalty-consumer: cannot read {name}: {exc.strerror}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        outcome = pipeline.process(RawRecord(value=value, headers=headers, topic=name))
        if isinstance(outcome, Accepted):
            line: dict[str, Any] = {"outcome": "accepted", "record": _jsonable(outcome.record)}
        elif isinstance(outcome, Ignored):
            line = {
                "outcome": "ignored",
                "reason": outcome.reason,
                "message": f"{outcome.provider} event {outcome.event_type} is not a redemption",
                "field": None,
            }
        else:
            status = max(status, EXIT_REJECTED)
            line = {
                "outcome": "rejected",
                "reason": outcome.reason,
                "message": outcome.message,
                "field": outcome.field,
            }
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    return status


def _jsonable(value: Any) -> Any:
    """Timestamps as ISO-8601 UTC strings with milliseconds; the rest as it is."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


if __name__ == "__main__":
    sys.exit(main())
