import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared beside the checkout (real data nobody here wrote); skip when absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set CURATE_SHARED to its path)")
    return SHARED


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test: on 2 shared cores, small matmuls with more OpenMP threads only
    wait on each other (100x slower under load)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def curate_exe() -> str:
    """The `curate` console script of the Python running the tests (not whatever PATH finds first)."""
    import sys

    exe = Path(sys.executable).with_name("curate")
    if not exe.is_file():
        pytest.skip(f"curate console script not installed beside {sys.executable}")
    return str(exe)


@pytest.fixture(scope="session")
def demo_sft(tmp_path_factory):
    """The bundled Alpaca demo (first 200 conversations) and a 400-piece BPE trained on it:
    (examples, tokenizer, path of its tok.model). Cheap, and needs no ../shared."""
    from train.sft import load_examples
    from train.tokenizer import train_bpe

    examples = load_examples(ROOT / "examples/compare/alpaca_en_demo.json")[:200]
    path = tmp_path_factory.mktemp("demo_tok") / "tok.model"
    tok = train_bpe([m["content"] for ex in examples for m in ex["messages"]], 400, path)
    return examples, tok, path
