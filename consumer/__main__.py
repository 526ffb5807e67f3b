"""loyalty-consumer: turns raw loyalty-redemption webhooks on a Kafka topic into clean,
typed Avro records.

  run        the service: settings from the environment (KAFKA_BOOTSTRAP_SERVERS, ...)
  replay     put dead letters back through the service (resumable, never doubled)
  tail       print the clean or the dead-letter topic as JSON lines
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
from consumer.providers import PROVIDER_NAMES
from consumer.records import Accepted, Ignored, RawRecord, iso_utc

log = logging.getLogger("consumer")

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2

RUN_HELP = """Run the service until SIGTERM or Ctrl-C. Settings come from the environment:

  KAFKA_BOOTSTRAP_SERVERS          brokers (required)
  LOYALTY_RAW_TOPIC                raw webhooks to consume (loyalty.webhooks.raw)
  LOYALTY_CLEAN_TOPIC              canonical records (loyalty.redemptions)
  LOYALTY_DLQ_TOPIC                rejected records (loyalty.webhooks.dlq)
  LOYALTY_GROUP_ID                 consumer group (loyalty-consumer)
  <PROVIDER>_WEBHOOK_SECRET        signing secrets, comma-separated (MAGE_LOYALTY_, RIVO_);
                                   required for every provider unless opted out below
  LOYALTY_UNSIGNED_PROVIDERS       providers accepted without a signature check
                                   (comma-separated; logged and exported as a metric)
  SCHEMA_REGISTRY_URL              Confluent wire format through this registry
  LOYALTY_METRICS_PORT             /metrics, /healthz, /readyz (9400)
  LOYALTY_METRICS_HOST             address they listen on (0.0.0.0: every interface)
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
    _add_replay(commands)
    _add_tail(commands)
    local = commands.add_parser(
        "local",
        help="the service against KAFKA_BOOTSTRAP_SERVERS or, when unset, a local broker; "
        "feeds sample webhooks and shows each record's outcome",
    )
    local.add_argument("--no-samples", action="store_true", help="do not feed sample webhooks")
    local.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop once every sample is processed and acknowledged",
    )
    local.add_argument(
        "--verbose", action="store_true", help="the service's JSON logs on stderr too"
    )
    local.add_argument(
        "--log-file",
        default="loyalty-consumer-local.log",
        help="where the service's JSON logs go (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "normalize":
            return _normalize(args.files, args.header, parser)
        settings = Settings.from_env()
        if args.command == "run":
            return _run(settings)
        elif args.command == "replay":
            return _replay(settings, args, parser)
        elif args.command == "tail":
            return _tail(settings, args)
        else:
            from consumer.dev.local_job import run_local

            run_local(
                settings,
                feed_samples=not args.no_samples,
                exit_when_done=args.exit_when_done,
                verbose=args.verbose,
                log_file=args.log_file,
            )
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


def _run(settings: Settings) -> int:
    """The service, once every provider is either verified or explicitly left unverified
    (ConfigError, exit 2, otherwise: signatures are the rule in production)."""
    unsigned = settings.require_signatures(PROVIDER_NAMES)
    logs.configure(settings.log_level)
    from consumer.metrics import Metrics
    from consumer.service import run_service

    metrics = Metrics()
    for name in unsigned:
        log.warning(
            f"signature checks are off for {name}: its webhooks are accepted unverified",
            extra={"provider": name, "variable": "LOYALTY_UNSIGNED_PROVIDERS"},
        )
        metrics.unsigned_providers.labels(provider=name).set(1)
    run_service(settings, metrics)
    return EXIT_OK


def _add_replay(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="re-publish dead letters to the raw topic (resumable, never doubled)",
        description="Re-publishes the dead-letter topic's records (original value, key and "
        "headers; lineage headers loyalty.replay.of/at/id added) to the raw topic. The "
        "position is kept in the consumer group <LOYALTY_GROUP_ID>-replay-<filter digest>: "
        "an interrupted replay continues where it stopped, and the same command run again "
        "replays nothing twice. Exit status: 0 all replayed, 1 something was not "
        "(see the message), 2 bad settings or arguments, 130 interrupted.",
    )
    replay.add_argument("--reason", action="append", default=[], help="rejection reason")
    replay.add_argument("--provider", action="append", default=[], help="provider name")
    replay.add_argument("--event-type", action="append", default=[], help="event type")
    replay.add_argument("--failed-after", metavar="TIME", help="ISO-8601, inclusive (UTC)")
    replay.add_argument("--failed-before", metavar="TIME", help="ISO-8601, exclusive (UTC)")
    replay.add_argument(
        "--source-partition", action="append", type=int, default=[], help="raw-topic partition"
    )
    replay.add_argument("--source-offset-from", type=int, metavar="N", help="raw-topic offset")
    replay.add_argument("--source-offset-to", type=int, metavar="N", help="inclusive")
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed; change nothing"
    )
    replay.add_argument("--rate", type=float, metavar="N", help="at most N records a second")
    replay.add_argument("--group", help="the consumer group keeping the position")


def _add_tail(commands: Any) -> None:
    tail = commands.add_parser(
        "tail",
        help="print the clean topic (decoded) or the dead-letter topic as JSON lines",
        description="Prints records as JSON lines: the clean topic's records decoded (either "
        "wire format), or dead letters with their reason headers. Without "
        "--from-beginning, the last 10 records of each partition.",
    )
    tail.add_argument(
        "topic",
        nargs="?",
        choices=("clean", "dead-letter"),
        default="clean",
        help="which topic (default: clean)",
    )
    tail.add_argument("--from-beginning", action="store_true", help="from the oldest record")
    tail.add_argument("--follow", "-f", action="store_true", help="keep waiting for records")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N records")
    tail.add_argument("--provider", action="append", default=[], help="only this provider")
    tail.add_argument("--reason", action="append", default=[], help="only this reason")
    tail.add_argument(
        "--raw-value", action="store_true", help="dead letters: include the value they carried"
    )


def _replay(settings: Settings, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from consumer.replay import ReplayFilter, parse_time_argument, run_replay

    try:
        after = parse_time_argument(args.failed_after) if args.failed_after else None
        before = parse_time_argument(args.failed_before) if args.failed_before else None
    except ValueError as exc:
        parser.error(str(exc))
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    logs.configure("WARNING" if settings.log_level == "INFO" else settings.log_level)
    selection = ReplayFilter(
        reasons=frozenset(args.reason),
        providers=frozenset(args.provider),
        event_types=frozenset(args.event_type),
        failed_after=after,
        failed_before=before,
        source_partitions=frozenset(args.source_partition),
        source_offset_min=args.source_offset_from,
        source_offset_max=args.source_offset_to,
    )
    return run_replay(settings, selection, args.dry_run, args.rate, args.group)


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.tail import TailFailed, TailOptions, run_tail

    logs.configure("WARNING" if settings.log_level == "INFO" else settings.log_level)
    options = TailOptions(
        dead_letters=args.topic == "dead-letter",
        from_beginning=args.from_beginning,
        follow=args.follow,
        max_records=args.max,
        providers=frozenset(args.provider),
        reasons=frozenset(args.reason),
        raw_value=args.raw_value,
    )
    try:
        return run_tail(settings, options)
    except TailFailed as exc:
        print(f"loyalty-consumer tail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # | head
        return 0


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
        try:
            # `-` is stdin, as for cat; a file that cannot be read is one line of the
            # output (and exit status 2), the others are still processed.
            value = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(
                f"loyalty-consumer normalize: cannot read {name}: {exc.strerror}", file=sys.stderr
            )
            line_error = {
                "input": name,
                "outcome": "error",
                "message": f"cannot read: {exc.strerror}",
            }
            sys.stdout.buffer.write(orjson.dumps(line_error) + b"\n")
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
