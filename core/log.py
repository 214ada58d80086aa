"""The console: -v/-q on every command line, module loggers, and progress bars.

    parser = add_verbosity_flags(argparse.ArgumentParser())
    args = parser.parse_args(); setup_logging(args)     # -q WARNING, default INFO, -v DEBUG
    log = logging.getLogger(__name__)                     # in each module; log.info("...")
    for batch in progress(loader, desc="predict"): ...   # a tqdm bar, none when quiet

Messages go to stderr, INFO ones as plain lines (as the commands always printed them), the
others prefixed with their level; stdout keeps what a command is asked for (tables, JSON).
Bars are tqdm's, shown on a terminal only. Inside Ray workers ray_jobs installs Ray's tqdm
(`use_bar`), whose bars the driver draws.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from tqdm import tqdm

PACKAGES = ("core", "ray_jobs", "ablations", "dashboards", "__main__")  # our loggers; others stay at WARNING
LEVEL_ENV = "DERMABLATE_LOG_LEVEL"  # how a driver hands its level to the processes it starts (Ray's workers)
BARS_ENV = "DERMABLATE_PROGRESS_BARS"  # and whether its console draws progress bars

_bar_class = None  # None: tqdm; else a tqdm-like class (ray.experimental.tqdm_ray.tqdm) given to use_bar
_bars_on = True


def add_verbosity_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="only the result, warnings and errors: no progress messages or bars")
    return parser


def level_of(args: argparse.Namespace) -> int:
    return logging.WARNING if getattr(args, "quiet", False) else (
        logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno == logging.INFO:
            return message
        if record.levelno == logging.DEBUG:
            return f"debug: {record.name}: {message}"
        return f"{record.levelname.lower()}: {message}"


class _Handler(logging.Handler):
    """Writes through tqdm, so that a line never lands in the middle of a bar; to the stderr of
    the moment (pytest swaps it per test)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Format())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def setup_logging(args: argparse.Namespace | int, handler: bool = True) -> int:
    """Our loggers at the level -v/-q ask for (or a level), printed plainly on stderr; bars off when
    quiet. Returns the level. Calling it again replaces the earlier set-up. `handler=False` keeps
    the root logger's handlers as they are (a Ray Train worker's, which print to the console)."""
    global _bars_on
    level = args if isinstance(args, int) else level_of(args)
    root = logging.getLogger()
    for ours in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(ours)
    if handler:
        root.addHandler(_Handler())
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)
    _bars_on = level <= logging.INFO
    return level


def child_env(level: int) -> dict[str, str]:
    """What a driver hands the processes it starts (Ray's workers): its level, and whether its console
    draws bars (a terminal, not quiet)."""
    return {LEVEL_ENV: logging.getLevelName(level), BARS_ENV: "1" if level <= logging.INFO and sys.stderr.isatty()
            else "0"}


def inherited() -> tuple[int, bool]:
    """(level, bars) from child_env's variables: INFO and no bars where there are none."""
    level = logging.getLevelName(os.environ.get(LEVEL_ENV, "INFO").upper())
    return (level if isinstance(level, int) else logging.INFO), os.environ.get(BARS_ENV) == "1"


def use_bar(bar_class) -> None:
    """Draw progress with `bar_class` (a tqdm-like class: iterable, desc, total, unit; update, close)."""
    global _bar_class
    _bar_class = bar_class


class _NoBar:
    """What `progress` hands back when no bar is drawn: the iterable, and tqdm's methods doing nothing."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass


class _OtherBar(_NoBar):
    """A use_bar class behind tqdm's interface: its description carries the postfix."""

    def __init__(self, iterable, desc: str, total: int | None, unit: str):
        super().__init__(iterable)
        self.desc = desc
        self.bar = _bar_class(iterable, desc=desc, total=total, unit=unit)

    def __iter__(self):
        try:
            yield from self.bar
        finally:
            self.bar.close()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values) -> None:
        self.bar.set_description(" ".join([self.desc, *(f"{k}={v}" for k, v in values.items())]))

    def close(self) -> None:
        self.bar.close()


def progress(iterable=None, *, desc: str, total: int | None = None, unit: str = "it", disable: bool = False):
    """A progress bar over `iterable` (or updated by hand): tqdm's on a terminal (leave=False), the
    use_bar class's in a Ray worker, none when quiet or `disable` (ranks above 0)."""
    if disable or not _bars_on:
        return _NoBar(iterable)
    if _bar_class is not None:
        return _OtherBar(iterable, desc, total, unit)
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=None)  # None: a terminal only


def bars_on() -> bool:
    """False when quiet: for the few bars drawn with tqdm's own options (the download's bytes)."""
    return _bars_on
