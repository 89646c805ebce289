"""The demo runs end to end on the bundled sample (scaled down: tiny model, few steps)."""
import json
from pathlib import Path

import pytest

import curate.demo as demo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]


def test_demo_end_to_end_small(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "MODEL", {**demo.MODEL, "dim": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 1024})
    monkeypatch.setattr(demo, "PRETRAIN", {**demo.PRETRAIN, "steps": 15, "batch_size": 4, "seq_len": 64})
    monkeypatch.setattr(demo, "VENDOR_SIZE", 24)
    monkeypatch.setattr(demo, "HELDOUT_SIZE", 16)
    monkeypatch.chdir(tmp_path)  # the demo must not depend on the working directory
    summary = demo.run_demo(Path("demo"), workers=1, quiet=True)  # relative, as `make demo` passes it
    curated = summary["curated"]
    assert curated["balanced"] and curated["read"] == 630 and 0 < curated["written"] < 630
    assert sorted(r["vendor"] for r in summary["ranking"]) == ["acme", "bolt", "cobalt"]
    report = (tmp_path / "demo/compare/compare.html").read_text()
    assert "acme" in report and "bolt" in report and "<script" not in report.lower()
    result = json.loads((tmp_path / "demo/compare/compare.json").read_text())
    assert set(result["loss"]["arms"]) >= {"acme", "bolt", "cobalt"}
