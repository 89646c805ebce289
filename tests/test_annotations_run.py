"""End to end: vendor files -> `curate vendors export` -> `curate run` with the
annotation checks and curate's dedup steps -> records back, unchanged."""
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from annotations.checks import CHECKS, Checker
from annotations.records import from_document, prompt_text
from annotations.vendors import load_config, read_vendor
from curate.cli import cli
from curate.dedup.normalize import normalize_exact
from curate.pipeline.runner import run_pipeline
from curate.record import Document

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vendors"


def test_export_then_curate_run(tmp_path):
    exported = tmp_path / "records"
    result = CliRunner().invoke(cli, ["vendors", "export", str(EXAMPLE / "vendors.yaml"), "--out", str(exported)])
    assert result.exit_code == 0, result.output

    config = yaml.safe_load((EXAMPLE / "clean.yaml").read_text())
    config["inputs"] = [{"path": str(exported / "records.jsonl")}]
    config["output"]["dir"] = str(tmp_path / "clean")
    stats = run_pipeline(config, workers=1, quiet=True)

    records = {r.id: r for v in load_config(EXAMPLE / "vendors.yaml") for r in read_vendor(v).records}
    out = [json.loads(line) for f in sorted((tmp_path / "clean" / "data").glob("*.jsonl"))
           for line in f.read_text().splitlines()]
    back = [from_document(Document(o["id"], o["text"], o["source"], o["meta"])) for o in out]
    assert back and all(r == records[r.id] for r in back)  # every field survived the run
    assert stats["read"] == len(records) == len(out) + stats["removed"]

    # each step removed what an independent count says it should
    checker = Checker()
    passed = [r for r in records.values()
              if not any(CHECKS[name].severity == "error" for name in checker.run(r))]
    prompts = [normalize_exact(prompt_text(r)) for r in passed]
    removed = {s["step"]: s["removed"] for s in stats["steps"]}
    assert removed["annotation_checks"] == len(records) - len(passed)
    assert removed["exact_dedup"] == len(prompts) - len(set(prompts))
    flagged = [o for o in out if "flags" in o["meta"]]
    assert all(set(o["meta"]["flags"]) <= {"truncated", "copies_prompt", "too_long", "refusal"} for o in flagged)
    # bolt's templated intros ({{name}}) never make it through
    assert not any("{{name}}" in o["text"] for o in out)
