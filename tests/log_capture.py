"""The one log capture of tests and benches: every record that reaches the server's loggers, to find
tracebacks (expected conditions must never print one)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CAPTURED = ("uvicorn.error", "voxroom", "")  # the web server's, voxroom's and the root logger


class LogCapture(logging.Handler):
    """Every record that reaches uvicorn.error, voxroom or the root logger (each record once)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            if id(record) not in self._seen:
                self._seen.add(id(record))
                self.records.append(record)

    def tracebacks(self, since: int = 0) -> list[logging.LogRecord]:
        """The records from the `since`-th on that carry a traceback or a stack."""
        with self._lock:
            return [r for r in self.records[since:] if r.exc_info or r.stack_info]


def described(record: logging.LogRecord, limit: int = 1500) -> str:
    """A record with its traceback (the last `limit` characters of it), for a failure message."""
    head = f"{record.name} {record.levelname}: {record.getMessage()}"
    return f"{head}\n{logging.Formatter().formatException(record.exc_info)[-limit:]}" if record.exc_info else head


@contextmanager
def capturing_logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    loggers = [logging.getLogger(name) for name in CAPTURED]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
