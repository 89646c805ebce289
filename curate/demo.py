"""The demo: the whole story on the bundled sample, in one call."""
from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError
from curate.pipeline.runner import run_pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_demo(out: Path, workers: int | None = None, quiet: bool = False) -> dict:
    """Curate the bundled pretraining sample into ``out/curated``; returns a summary."""
    config = EXAMPLES / "pipeline.yaml"
    if not config.is_file():
        raise CurateError(f"bundled examples not found at {EXAMPLES}; run the demo from a source checkout")
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw["inputs"] = [{**i, "path": str(EXAMPLES.parent / i["path"])} for i in raw["inputs"]]
    stats = run_pipeline(raw, out=out / "curated", workers=workers, quiet=quiet)
    return {"curated": {k: stats[k] for k in ("read", "written", "removed", "rejected", "balanced")}, "out": str(out)}
