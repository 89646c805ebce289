"""The one (arm, seed) grid of every experiment: vendor comparison, SFT and pretraining data
ablations, the architecture ablation.

A grid lives in a run folder. ``plan.json`` fixes the plan (everything that changes the
results: data fingerprints, hyperparameters, steps, seeds); a folder holding a different plan
is refused rather than mixed. Each finished cell is written atomically to
``runs/<arm>/seed_<s>.json`` and skipped on a rerun, so a crashed run resumes where it stopped.
Cells run seed-major: a crash leaves every arm equally far.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from curate.basics.errors import CurateError
from curate.basics.files import write_json


def safe_name(name: str) -> str:
    """``name`` as a file name: other characters become ``_``, at most 80 characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "arm"


class Grid:
    """Cells ``(arm, seed)`` for ``arms`` x ``range(seeds)`` under ``run_dir`` with ``plan``
    (JSON-able). ``label`` prefixes the progress lines (``[label] training arm seed s``)."""

    def __init__(self, run_dir: str | Path, plan: dict, arms: list[str], seeds: int, label: str = "grid"):
        if len({safe_name(a) for a in arms}) != len(arms):
            raise CurateError(f"arm names must be distinct (as file names too): {arms}")
        self.run_dir, self.plan, self.arms, self.seeds, self.label = Path(run_dir), plan, arms, seeds, label

    def check_plan(self) -> None:
        """Write plan.json, or refuse a run folder that holds a different plan."""
        path = self.run_dir / "plan.json"
        plan = json.loads(json.dumps(self.plan))
        if path.is_file():
            old = json.loads(path.read_text())
            if old != plan:
                changed = sorted(k for k in set(plan) | set(old) if old.get(k) != plan.get(k))
                raise CurateError(f"{self.run_dir} holds a different plan (changed: {', '.join(changed)}); "
                                  f"use a new output folder")
        else:
            write_json(path, self.plan, indent=1, newline=False)

    def path(self, arm: str, seed: int) -> Path:
        """Where the result of cell (arm, seed) is written."""
        return self.run_dir / "runs" / safe_name(arm) / f"seed_{seed}.json"

    def run(self, cell: Callable[[str, int], dict], quiet: bool = True) -> dict[str, list[dict]]:
        """Run ``cell(arm, seed)`` for every cell not done yet; return arm -> per-seed results."""
        self.check_plan()
        for seed in range(self.seeds):
            for arm in self.arms:
                path = self.path(arm, seed)
                if not path.is_file():
                    if not quiet:
                        print(f"[{self.label}] training {arm} seed {seed}", flush=True)
                    write_json(path, cell(arm, seed), indent=1, newline=False)
        return {arm: [json.loads(self.path(arm, s).read_text()) for s in range(self.seeds)] for arm in self.arms}
