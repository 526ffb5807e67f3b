"""Terminal output for people, through rich: progress (a bar with count, rate and ETA on
a terminal, a plain line every few seconds otherwise), tables, and the human lines of
the live view. The service's own logs stay JSON (consumer/logs.py); this is for the
operators' commands and the first run."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Without a terminal (a pipe, a CI log, kubectl logs), one progress line this often.
PLAIN_PROGRESS_SECONDS = 5.0


def console(stream: TextIO | None = None) -> Console:
    """A console on `stream` (stdout by default). Colours and live redrawing only on a
    terminal; elsewhere plain text that reads well in a log."""
    return Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)


def error_console() -> Console:
    return console(sys.stderr)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s")


class ProgressReport:
    """Counts done out of a known total, with a rate and an estimated time left: a live
    bar on a terminal, a plain line every PLAIN_PROGRESS_SECONDS otherwise. `note` is
    shown beside the count (e.g. how many of the records read were replayed)."""

    def __init__(self, out: Console, description: str, total: int) -> None:
        self._out = out
        self._description = description
        self._total = total
        self._done = 0
        self._note = ""
        self._started = time.monotonic()
        self._last_line = self._started
        self._progress: Progress | None = None
        if out.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=out,
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, note="")

    def __enter__(self) -> ProgressReport:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
        else:
            self._plain_line()

    def advance(self, count: int = 1, note: str | None = None) -> None:
        self._done += count
        if note is not None:
            self._note = note
        if self._progress is not None:
            self._progress.update(self._task, advance=count, note=self._note)
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_SECONDS:
            self._plain_line()

    def _plain_line(self) -> None:
        now = time.monotonic()
        self._last_line = now
        elapsed = max(now - self._started, 1e-9)
        rate = self._done / elapsed
        left = self._total - self._done
        eta = f", about {left / rate:.0f}s left" if rate and left > 0 else ""
        note = f", {self._note}" if self._note else ""
        self._out.print(
            f"{self._description}: {self._done}/{self._total}{note}, {rate:,.0f}/s{eta}"
        )


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A table; numeric columns (all but the first ones that hold text) right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    shown = Table(title=title, title_justify="left", show_lines=False)
    for index, name in enumerate(columns):
        numeric = all(row[index].replace(",", "").isdigit() for row in rows) and bool(rows)
        shown.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        shown.add_row(*row)
    return shown


class HumanLogHandler(logging.Handler):
    """Warnings and errors as one readable line each, for a person at a terminal while
    the JSON logs go to a file: `warning: cannot reach the brokers at ... (error=...)`."""

    _FACTS = ("error", "variable", "topic", "partition", "offset", "reason")

    def __init__(self, out: Console) -> None:
        super().__init__(logging.WARNING)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "consumer.kafka" and record.levelno < logging.ERROR:
            return  # librdkafka's transient warnings (coordinator loading, retries)
        facts = ", ".join(
            f"{name}={getattr(record, name)}" for name in self._FACTS if hasattr(record, name)
        )
        style = "red" if record.levelno >= logging.ERROR else "yellow"
        text = Text(f"{record.levelname.lower()}: {record.getMessage()}", style=style)
        if facts:
            text.append(f" ({facts})", style="dim")
        self._out.print(text)


def how_to_run(module: str = "consumer") -> str:
    """How a person runs `module` again from the shell they are in: the plain command
    when it is on their PATH, else the virtualenv's own path (a `make run` user's shell
    has not activated .venv), relative to the working directory when inside it."""
    python = Path(sys.executable)
    script = python.parent / "loyalty-consumer"
    if module == "consumer" and script.is_file():
        on_path = shutil.which("loyalty-consumer")
        if on_path and Path(on_path).resolve() == script.resolve():
            return "loyalty-consumer"
        return _shown_path(script)
    return f"{_shown_path(python)} -m {module}"


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
