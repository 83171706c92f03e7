"""A dependency-free progress bar for long command-line work, written to stderr."""

import sys
import time
from typing import TextIO


class ProgressBar:
    """``label [######----] 40/100 sessions 12.5/s``, redrawn in place on a terminal.

    When the stream is not a terminal (a log file, CI), a plain line is printed at every tenth
    of the way instead, so the output stays readable.
    """

    def __init__(self, total: int, label: str, unit: str, stream: TextIO | None = None, width: int = 30) -> None:
        """Start a bar for ``total`` items of ``unit``."""
        self.total = total
        self.done = 0
        self._label = label
        self._unit = unit
        self._stream = stream or sys.stderr
        self._width = width
        self._started = time.monotonic()
        self._last_tenth = -1
        self._interactive = self._stream.isatty()
        self._draw()

    def advance(self, count: int = 1) -> None:
        """Record ``count`` more items done."""
        self.done += count
        self._draw()

    def close(self) -> None:
        """Finish the line."""
        if self._interactive:
            self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0  # items added meanwhile overshoot
        if not self._interactive:
            tenth = int(fraction * 10)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        filled = int(fraction * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        line = f"{self._label} [{bar}] {self.done}/{self.total} {self._unit} {rate:.1f}/s"
        self._stream.write(f"\r{line}" if self._interactive else f"{line}\n")
        self._stream.flush()
