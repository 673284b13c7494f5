"""nbgrader's and traitlets' log while a converter runs in this process: captured, not printed."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["quiet_logs"]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class quiet_logs:  # noqa: N801 - used as a context manager
    """Route nbgrader/traitlets logs to a file (or nowhere) while converters run."""

    def __init__(self, logfile: Path | None = None) -> None:
        self.logfile = logfile
        self.capture = _Capture()

    def __enter__(self) -> _Capture:
        self.logger = logging.getLogger("traitlets")
        self.saved = (self.logger.level, self.logger.propagate, list(self.logger.handlers))
        self.logger.handlers = [self.capture]
        if self.logfile is not None:
            handler = logging.FileHandler(self.logfile)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.logger.handlers.append(handler)
        self.logger.setLevel(logging.WARNING)
        self.logger.propagate = False
        return self.capture

    def __exit__(self, *exc: object) -> None:
        for handler in self.logger.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
        self.logger.handlers = self.saved[2]
