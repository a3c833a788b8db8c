"""Progress for long steps: one line per step on stderr with its duration."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Progress:
    def __init__(self, total_steps: int = 0, enabled: bool = True, stream=None):
        self.total = total_steps
        self.done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}
        self._depth = 0

    @contextmanager
    def step(self, title: str):
        """A numbered step; steps inside a step are indented and not counted."""
        if self._depth == 0:
            self.done += 1
            prefix = f"[{self.done}/{self.total}] " if self.total else ""
        else:
            prefix = "    " * self._depth + "- "
        if self.enabled:
            print(f"{prefix}{title} ...", file=self.stream, flush=True)
        t0 = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        elapsed = time.perf_counter() - t0
        self.timings[title] = elapsed
        if self.enabled:
            print(f"{' ' * len(prefix)}done in {elapsed:.1f}s", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"    {text}", file=self.stream, flush=True)


SILENT = Progress(enabled=False)
