"""Progress on stderr: a tqdm bar on a terminal, plain lines otherwise (logs, CI, --json)."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """A bar with loss, accuracy, images/s and ETA; silent when disabled or not on a TTY."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.bar = None
        self.count = 0
        self.last = time.perf_counter()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr,
                            dynamic_ncols=True, unit="batch")

    def update(self, **stats: float) -> None:
        self.count += 1
        if self.bar is None:
            return
        now = time.perf_counter()
        if now - self.last > 0.2 or self.count == self.bar.total:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
            self.last = now
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
