"""loyalty-consumer: turns raw loyalty-redemption webhooks on a Kafka topic into clean,
typed Avro records.

  run        the service: settings from the environment (KAFKA_BOOTSTRAP_SERVERS, ...)
  tail       print the clean or the dead-letter topic (JSON lines, a value, a template)
  status     the consumer group's members, assignment and lag per partition
  replay     put dead letters back through the service (resumable, never doubled)
  normalize  the same pipeline on webhook files, one JSON line each, no Kafka
  local      the service on a local broker, fed with sample webhooks (a first look)

Exit status: 0 done, 1 failed (one line says why), 2 bad settings or arguments,
130 interrupted; `run` adds 3, 4 and 5 (see `loyalty-consumer run --help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from consumer import __version__, logs
from consumer.config import Settings, settings_help
from consumer.errors import (
    ConfigError,
    KafkaFailure,
    LoyaltyConsumerError,
    ReadFailed,
    UsageError,
)
from consumer.pipeline import Pipeline
from consumer.providers import PROVIDER_NAMES
from consumer.records import Accepted, Ignored, RawRecord, jsonable

log = logging.getLogger("consumer")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_REJECTED = EXIT_FAILED  # normalize: some input was rejected

RUN_HELP = f"""Run the service until SIGTERM or Ctrl-C. Settings come from the environment:

{settings_help()}
  <PROVIDER>_WEBHOOK_SECRET              signing secrets, comma-separated; `run` needs one
                                         for every provider not in LOYALTY_UNSIGNED_PROVIDERS
  <NAME>_FILE                            a secret's value read from a file
  KAFKA_<PROP>, KAFKA_CONSUMER_<PROP>, KAFKA_PRODUCER_<PROP>
                                         any librdkafka property (KAFKA_SECURITY_PROTOCOL=SASL_SSL)

A LOYALTY_* variable that is not listed here is refused (a misspelling), as are the
same topic in two roles and a session timeout the brokers would refuse.

Exit status: 0 stopped cleanly, 1 stopped on an error, 2 bad settings,
3 the shutdown deadline passed, 4 the final commit failed (the next owner re-reads
what was not committed), 5 fenced by a newer member with the same name
(exactly-once), 6 the loop stopped coming back (the watchdog; a restart resumes),
130/143 a second SIGINT/SIGTERM ended it at once."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    try:
        return _dispatch(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"loyalty-consumer {args.command}: {exc}\n")
    except ConfigError as exc:
        print(f"loyalty-consumer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"loyalty-consumer {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `| head` closed the pipe: what was wanted was printed
        _silence_stdout()
        return EXIT_OK
    except KafkaFailure as exc:
        log.error("service stopped", extra={"error": str(exc), "exit_status": exc.exit_status})
        return exc.exit_status
    except LoyaltyConsumerError as exc:
        log.error("service stopped", extra={"error": str(exc)})
        return EXIT_FAILED
    except Exception as exc:
        if args.command == "run":
            # A bug: stop loudly, but through the JSON formatter (and its masking).
            log.exception("service crashed")
        elif verbose:
            raise
        else:
            print(
                f"loyalty-consumer {args.command}: {_one_line(exc)} "
                "(--verbose shows where it came from)",
                file=sys.stderr,
            )
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "normalize":
        return _normalize(args.files, args.header)
    settings = Settings.from_env()
    if args.command == "run":
        return _run(settings)
    if args.command == "local":
        return _local(settings, args)
    logs.configure("WARNING" if settings.log_level == "INFO" else settings.log_level)
    client_log = logging.getLogger("consumer.kafka")
    level = client_log.level
    if not args.verbose:
        # The client's own connection errors: the command says what failed, once.
        client_log.setLevel(logging.CRITICAL)
    try:
        if args.command == "replay":
            return _replay(settings, args)
        if args.command == "tail":
            return _tail(settings, args)
        from consumer.status import run_status

        return run_status(settings, args.group, args.json)
    except ReadFailed as exc:
        print(f"loyalty-consumer {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client_log.setLevel(level)


def _parser() -> argparse.ArgumentParser:
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
        "normalize",
        help="run the pipeline on raw webhook files and print one JSON line each",
        description="Exit status: 0 every input accepted or ignored, 1 one was rejected, "
        "2 an input could not be read or bad arguments, 130 interrupted.",
    )
    normalize.add_argument("files", nargs="*", help="raw webhook bodies; '-' reads standard input")
    normalize.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a webhook header applied to every input (repeatable)",
    )
    _verbose(normalize)
    _add_replay(commands)
    _add_tail(commands)
    status = commands.add_parser(
        "status",
        help="the consumer group's members, assignment and lag per partition",
        description="The group's state and members, and per partition of the raw topic: "
        "the committed offset, the end offset, the lag and the member holding it. "
        "Exit status: 0 shown, 1 cannot reach the brokers or the topic is missing, "
        "2 bad settings.",
    )
    status.add_argument("--group", help="another group (default: LOYALTY_GROUP_ID)")
    status.add_argument("--json", action="store_true", help="one JSON object")
    _verbose(status)
    local = commands.add_parser(
        "local",
        help="the service against KAFKA_BOOTSTRAP_SERVERS or, when unset, a local broker; "
        "feeds sample webhooks and shows each record's outcome",
        description="Uses a consumer group of its own (loyalty-consumer-local-<random>) "
        "unless LOYALTY_GROUP_ID is set. Exit status: 0 stopped, 1 failed (one line says "
        "why and what to do), 2 bad settings, 130 interrupted.",
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
    return parser


def _verbose(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--verbose", action="store_true", help="on a failure, the traceback as well"
    )


def _add_dead_letter_filters(command: argparse.ArgumentParser) -> None:
    from consumer.dead_letter_reader import KNOWN_PROVIDERS, KNOWN_REASONS

    command.add_argument(
        "--reason", action="append", default=[], help=f"one of {', '.join(KNOWN_REASONS)}"
    )
    command.add_argument(
        "--provider", action="append", default=[], help=f"one of {', '.join(KNOWN_PROVIDERS)}"
    )
    command.add_argument("--event-type", action="append", default=[], help="event type")
    command.add_argument("--failed-after", metavar="TIME", help="ISO-8601, inclusive (UTC)")
    command.add_argument("--failed-before", metavar="TIME", help="ISO-8601, exclusive (UTC)")
    command.add_argument(
        "--source-partition", action="append", type=int, default=[], help="raw-topic partition"
    )
    command.add_argument("--source-offset-from", type=int, metavar="N", help="raw-topic offset")
    command.add_argument("--source-offset-to", type=int, metavar="N", help="inclusive")


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
        "position is kept in the consumer group <LOYALTY_GROUP_ID>-replay-<filter digest>, "
        "with a resume marker: an interrupted replay continues where it stopped, and no "
        "dead letter is replayed twice by the same replay, even after a crash. Exit "
        "status: 0 all replayed, 1 something was not (see the message), 2 bad settings or "
        "arguments, 130 interrupted.",
    )
    _add_dead_letter_filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed; change nothing"
    )
    replay.add_argument("--rate", type=float, metavar="N", help="at most N records a second")
    replay.add_argument("--group", help="the consumer group keeping the position")
    _verbose(replay)


def _add_tail(commands: Any) -> None:
    tail = commands.add_parser(
        "tail",
        help="print the clean topic (decoded) or the dead-letter topic",
        description="Prints records: the clean topic's decoded (either wire format), or "
        "dead letters with their reason, source and replay lineage. Without --offset, "
        "--from-beginning or --since: the last 10 records of each partition. Exit status: "
        "0 done, 1 cannot read (one line says why), 2 bad settings or arguments, "
        "130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Formats: json (one object a line), value (the record, or a dead letter's "
        "value), pretty (indented JSON), or a template with the line's fields: "
        "'{partition}@{offset} {reason} {source[offset]}'.",
    )
    tail.add_argument(
        "topic",
        nargs="?",
        choices=("clean", "dead-letter"),
        default="clean",
        help="which topic (default: clean)",
    )
    tail.add_argument("--partition", "-p", action="append", type=int, default=[])
    tail.add_argument(
        "--offset", "-o", metavar="WHERE", help="a number, beginning, end, or -N (the last N)"
    )
    tail.add_argument("--from-beginning", action="store_true", help="same as --offset beginning")
    tail.add_argument("--since", metavar="TIME", help="records from this time (ISO-8601)")
    tail.add_argument("--until", metavar="TIME", help="records before this time (ISO-8601)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep waiting for records")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N records")
    tail.add_argument("--key", action="append", default=[], help="only records with this key")
    tail.add_argument("--format", default="json", help="json, value, pretty or a template")
    _add_dead_letter_filters(tail)
    tail.add_argument(
        "--raw-value", action="store_true", help="dead letters: include the value they carried"
    )
    _verbose(tail)


def _selection(args: argparse.Namespace):
    from consumer.dead_letter_reader import DeadLetterFilter, parse_time_argument

    try:
        return DeadLetterFilter(
            reasons=frozenset(args.reason),
            providers=frozenset(args.provider),
            event_types=frozenset(args.event_type),
            failed_after=parse_time_argument(args.failed_after) if args.failed_after else None,
            failed_before=parse_time_argument(args.failed_before) if args.failed_before else None,
            source_partitions=frozenset(args.source_partition),
            source_offset_min=args.source_offset_from,
            source_offset_max=args.source_offset_to,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.replay import ReplayOptions, run_replay

    if args.rate is not None and not args.rate > 0:
        raise UsageError("--rate must be positive")
    options = ReplayOptions(
        selection=_selection(args), dry_run=args.dry_run, rate=args.rate, group=args.group
    )
    return run_replay(settings, options)


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.dead_letter_reader import parse_time_argument
    from consumer.tail import Offset, TailOptions, TailUsageError, run_tail

    try:
        if args.from_beginning and args.offset not in (None, "beginning"):
            raise TailUsageError("--from-beginning and --offset contradict each other")
        offset = Offset.parse("beginning" if args.from_beginning else args.offset or "-10")
        if args.offset is None and not args.from_beginning:
            offset = Offset()
        options = TailOptions(
            dead_letters=args.topic == "dead-letter",
            offset=offset,
            since=parse_time_argument(args.since) if args.since else None,
            until=parse_time_argument(args.until) if args.until else None,
            partitions=frozenset(args.partition),
            follow=args.follow,
            max_records=args.max,
            keys=frozenset(args.key),
            selection=_selection(args),
            raw_value=args.raw_value,
            output=args.format,
        )
        return run_tail(settings, options)
    except (TailUsageError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _local(settings: Settings, args: argparse.Namespace) -> int:
    from consumer.dev.local_job import LOCAL_GROUP_PREFIX, LocalRunFailed, run_local

    if not os.environ.get("LOYALTY_GROUP_ID"):
        settings = dataclasses.replace(
            settings, group_id=f"{LOCAL_GROUP_PREFIX}{secrets.token_hex(4)}"
        )
    try:
        run_local(
            settings,
            feed_samples=not args.no_samples,
            exit_when_done=args.exit_when_done,
            verbose=args.verbose,
            log_file=args.log_file,
        )
    except LocalRunFailed as exc:
        print(f"loyalty-consumer local: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _normalize(files: list[str], header_args: list[str]) -> int:
    headers = []
    for item in header_args:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--header expects NAME=VALUE, got {item!r}")
        headers.append((name, value.encode()))
    if not files and sys.stdin.isatty():
        # Nothing piped in: waiting on the terminal would look like a hang.
        raise UsageError("give webhook files, or pipe a webhook in (`-` reads standard input)")
    if "-" in files and sys.stdin.isatty():
        print("reading a webhook from the terminal; Ctrl-D ends it", file=sys.stderr)
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
            line: dict[str, Any] = {"outcome": "accepted", "record": jsonable(outcome.record)}
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


if __name__ == "__main__":
    sys.exit(main())
