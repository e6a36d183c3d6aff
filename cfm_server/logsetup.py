"""Logging for ``cfm serve``: text or JSON lines, to stderr or a file reopened on SIGHUP.

Library code only calls ``logging.getLogger``; this module is what the command line
configures. Every timestamp carries its UTC offset (``2026-12-04T03:45:01.123+00:00``),
so lines from machines in different zones, or either side of a DST change, sort.

``--log-file`` is opened in append mode; after logrotate (or anyone) moves it away,
SIGHUP makes the server reopen the path, so new lines go to a new file. A file the
server creates is mode 0600 whatever the umask (the log names who connected from where,
as private as the data directory); an existing one keeps the mode its owner gave it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else was passed in ``extra=`` and goes into
# a JSON line as its own key.
_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created).astimezone()
    return moment.isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """``<time with offset> <LEVEL> <logger>: <message>``, the traceback below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, any ``extra=``
    keys, and ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_KEYS and not key.startswith("_"):
                line[key] = value if isinstance(value, str | int | float | bool | None) \
                    else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class ReopenableFileHandler(logging.StreamHandler[TextIO]):
    """Appends to ``path``; :meth:`reopen` closes it and opens the path again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> TextIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            return open(fd, "a", encoding="utf-8")  # the handler closes it
        except BaseException:
            os.close(fd)
            raise

    def reopen(self) -> None:
        fresh = self._open()  # before closing: an unwritable path keeps the old file
        self.acquire()
        try:
            old, self.stream = self.stream, fresh
        finally:
            self.release()
        old.close()

    def close(self) -> None:
        self.acquire()
        try:
            self.stream.close()
        finally:
            self.release()
        super().close()


class LogSetup:
    """What :func:`setup_logging` installed, for SIGHUP and shutdown."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    @property
    def file(self) -> Path | None:
        return self.handler.path if isinstance(self.handler, ReopenableFileHandler) else None

    def reopen(self) -> Path | None:
        """Reopen the log file (SIGHUP); the path reopened, None when logging to stderr.
        OSError if the path cannot be opened (the old file is kept)."""
        if not isinstance(self.handler, ReopenableFileHandler):
            return None
        self.handler.reopen()
        return self.handler.path

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def parse_level(level: str) -> int:
    """A level name as ``--log-level`` takes it; ValueError with the choices."""
    numeric = getattr(logging, level.strip().upper(), None) if level.strip() else None
    if level.strip().lower() not in LEVELS or not isinstance(numeric, int):
        raise ValueError(f"must be {', '.join(LEVELS[:-1])} or {LEVELS[-1]}, not {level!r}")
    return numeric


def setup_logging(level: str = "info", fmt: str = "text", file: Path | None = None,
                  stream: TextIO | None = None) -> LogSetup:
    """Configure the root logger. ValueError for a bad level or format; OSError when the
    log file cannot be opened."""
    numeric = parse_level(level)
    if fmt not in FORMATS:
        raise ValueError(f"must be text or json, not {fmt!r}")
    handler: logging.Handler
    if file is not None:
        handler = ReopenableFileHandler(file)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.addHandler(handler)  # beside any other (a test's capture); close() removes it
    root.setLevel(numeric)
    # websockets' own per-connection lines at info are noise on a busy server; the
    # server logs connections itself (cfm_server.conn).
    logging.getLogger("cfm_server.websockets").setLevel(max(numeric, logging.WARNING))
    return LogSetup(handler)
