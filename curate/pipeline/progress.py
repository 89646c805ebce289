"""A progress bar for runs: documents per second, shards done, and an ETA once
enough shards have finished to estimate the total."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, total_shards: int, done_shards: int = 0, quiet: bool = False):
        self.total_shards, self.done_shards, self.docs_done = total_shards, done_shards, 0
        self._started_with = done_shards
        self.bar = None if quiet else tqdm(desc=label, unit="doc", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                                           postfix=f"shards {done_shards}/{total_shards}", mininterval=0.5)

    def docs(self, n: int) -> None:
        self.docs_done += n
        if self.bar is not None:
            self.bar.update(n)

    def shard_done(self) -> None:
        self.done_shards += 1
        if self.bar is None:
            return
        finished = self.done_shards - self._started_with
        remaining = self.total_shards - self._started_with
        if 0 < finished < remaining:  # estimate the total so tqdm can show an ETA
            self.bar.total = int(self.docs_done / finished * remaining)
        self.bar.set_postfix_str(f"shards {self.done_shards}/{self.total_shards}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            if not exc[0]:
                self.bar.total = self.bar.n
                self.bar.refresh()
            self.bar.close()
