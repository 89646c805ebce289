"""Arms in parallel: 2 worker processes give the same compare.json figures as 1, a worker that dies loses
only its own cell (the others are written and a rerun resumes it), and the Ray executor agrees."""
import json
import os

import pytest
import torch

from curate.basics.errors import CurateError
from experiments.compare import run as C
from experiments.compare.arms import Settings
from experiments.harness import Grid
from experiments.report import write_report
from train.model import Llama, get_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SETTINGS = dict(seeds=2, budget="examples", steps=4, eval_points=1,
                train={"lr": 3e-3, "batch_size": 4, "seq_len": 96, "warmup_steps": 1})


def figures(result: dict) -> dict:
    """Everything in the result that the runs determine (not wall-clock seconds)."""
    out = {k: result[k] for k in ("loss", "win_rate_loss", "prompt_following", "conditioning", "base_loss")}
    out["vendors"] = {n: {k: v for k, v in s.items() if k != "train_seconds"} for n, s in result["vendors"].items()}
    return out


@pytest.fixture(scope="module")
def setup(demo_sft):
    examples, tok, _ = demo_sft
    torch.manual_seed(0)
    base = Llama(get_config("tiny", vocab_size=tok.vocab_size, max_seq_len=128))
    vendors = {"a": examples[:40], "b": C.shuffle_answers(examples[:40], seed=1)}
    return vendors, base, tok, examples[150:180]


def test_two_workers_give_the_same_figures_as_one(setup, tmp_path):
    vendors, base, tok, heldout = setup
    one = C.compare(vendors, base, tok, heldout, Settings(**SETTINGS), tmp_path / "one", n_boot=200)
    two = C.compare(vendors, base, tok, heldout, Settings(**SETTINGS), tmp_path / "two", n_boot=200, workers=2)
    assert figures(two) == figures(one)
    for name in ("one", "two"):
        write_report(two if name == "two" else one, tmp_path / name / "report")
    a, b = (json.loads((tmp_path / n / "report" / "compare.json").read_text()) for n in ("one", "two"))
    assert figures(a) == figures(b)
    runs = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two" / "runs").rglob("seed_*.json"))
    assert len(runs) == 2 * 2  # vendors a, b at 2 seeds each


class DiesOnB:
    """A cell that kills its worker process for arm b (as an out-of-memory kill would)."""

    def __call__(self, arm, seed):
        if arm == "b":
            os._exit(9)
        return {"arm": arm, "seed": seed, "pid": os.getpid()}


def test_a_dead_worker_loses_only_its_own_cell(tmp_path):
    grid = Grid(tmp_path, {"plan": 1}, ["a", "b", "c"], seeds=2)
    with pytest.raises(CurateError, match=r"2 cell\(s\) failed.*b seed 0: worker died"):
        grid.run(DiesOnB(), workers=2)
    done = sorted(p.parent.name + p.name for p in (tmp_path / "runs").rglob("*.json"))
    assert done == ["aseed_0.json", "aseed_1.json", "cseed_0.json", "cseed_1.json"]
    pids = {json.loads(grid.path(arm, s).read_text())["pid"] for arm in "ac" for s in range(2)}
    assert os.getpid() not in pids  # ran in worker processes
    # a rerun resumes only the lost cells
    results = grid.run(lambda arm, seed: {"arm": arm, "seed": seed, "pid": 0})
    assert [r["pid"] for r in results["b"]] == [0, 0] and all(r["pid"] for r in results["a"])


@pytest.mark.slow
def test_ray_executor_gives_the_same_figures(setup, tmp_path):
    pytest.importorskip("ray")
    vendors, base, tok, heldout = setup
    one = C.compare(vendors, base, tok, heldout, Settings(**SETTINGS), tmp_path / "one", n_boot=200)
    ray = C.compare(vendors, base, tok, heldout, Settings(**SETTINGS), tmp_path / "ray", n_boot=200,
                    executor="ray")
    assert figures(ray) == figures(one)
