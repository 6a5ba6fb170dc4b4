"""A test clock for channels end to end: real time, which a test can jump forward."""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class MovingClock:
    """Real time from `start` on, which a test can also jump forward (past a retry_after)."""

    def __init__(self, start: datetime) -> None:
        self.start, self.t0, self.offset = start, time.monotonic(), 0.0

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.t0 + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds
