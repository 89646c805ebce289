"""The training loop: token-weighted gradient accumulation, the schedule, exact resume,
DDP with two CPU processes against one process, configs and the CLI."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from curate.basics.errors import CurateError
from curate.cli import cli
from train.config import PretrainConfig, TrainConfig, load_config
from train.distributed import World
from train.model import Llama, get_config
from train.run import pretrain
from train.trainer import build_optimizer, lm_loss_sum, lr_at, train_step

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shards(shared, tmp_path_factory):
    """Real C4 text, a 512-piece BPE trained on it, tokenized into shards through the CLI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = tmp_path_factory.mktemp("loop")
    texts = [json.loads(line)["text"] for line in (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()]
    pq.write_table(pa.table({"text": texts[:120]}), tmp / "docs.parquet")
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "tokenizer", str(tmp / "docs.parquet"), "--out", str(tmp / "bpe.model"),
                            "--vocab-size", "512"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["shards", "tokenize", str(tmp / "docs.parquet"), "--tokenizer", str(tmp / "bpe.model"),
                            "--out", str(tmp / "shards")])
    assert r.exit_code == 0, r.output
    return tmp


def run_cfg(tmp, name, **train):
    t = {"steps": 8, "batch_size": 4, "seq_len": 32, "lr": 1e-2, "warmup_steps": 2, "eval_every": 4,
         "eval_batches": 2, "log_every": 100, "ckpt_every": 0, "device": "cpu", **train}
    return {"run_dir": str(tmp / name), "shards": str(tmp / "shards"), "seed": 3, "val_fraction": 0.05,
            "model": {"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "multiple_of": 16,
                      "vocab_size": 512, "max_seq_len": 64},
            "train": t}


def test_schedule_by_hand():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # half way down the cosine: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    model = Llama(get_config("tiny", vocab_size=64))
    opt = build_optimizer(model, cfg)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-5
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    assert id(model.norm.weight) not in decayed and id(model.output.weight) in decayed


def test_grad_accumulation_weights_every_token_equally():
    torch.manual_seed(0)
    cfg = TrainConfig(lr=1e-2, grad_clip=1.0)
    x = torch.randint(0, 64, (8, 17))
    targets = x[:, 1:].clone()
    for i in range(8):  # unequal numbers of loss tokens per row and per micro-batch: 16, 14, ..., 2
        targets[i, 16 - 2 * i:] = -100
    full = {"inputs": x[:, :-1], "targets": targets}
    micro = [{k: v[i:i + 2] for k, v in full.items()} for i in range(0, 8, 2)]

    def step(batches):
        torch.manual_seed(1)
        model = Llama(get_config("tiny", vocab_size=64))
        opt = build_optimizer(model, cfg)
        out = train_step(model, opt, batches, World(), cfg, lr=1e-2)
        return model, out

    m8, out8 = step([full])
    m4x2, out4x2 = step(micro)
    assert out8["tokens"] == out4x2["tokens"] == sum(range(2, 17, 2))
    assert out4x2["loss"] == pytest.approx(out8["loss"], rel=1e-6)
    assert out4x2["grad_norm"] == pytest.approx(out8["grad_norm"], rel=1e-5)
    for (name, a), b in zip(m8.named_parameters(), m4x2.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)

    # the mean of per-micro-batch means is a different (wrong) gradient here
    torch.manual_seed(1)
    ref = Llama(get_config("tiny", vocab_size=64))
    means = sum(s / n for s, n in (lm_loss_sum(ref, b) for b in micro)) / 4
    means.backward()
    torch.manual_seed(1)
    ref8 = Llama(get_config("tiny", vocab_size=64))
    s, n = lm_loss_sum(ref8, full)
    (s / n).backward()
    gap = (ref.output.weight.grad - ref8.output.weight.grad).abs().max()
    assert gap > 1e-4


def test_exact_resume(shards):
    full = pretrain(run_cfg(shards, "full"), quiet=True)
    assert len(full.losses) == 8 and full.val_losses[0][0] == 4
    part = pretrain(run_cfg(shards, "part"), stop_after=3, quiet=True)
    assert len(part.losses) == 3
    # a half-written checkpoint (a crash mid-save) must be ignored on resume
    (shards / "part/checkpoints/.step_00000005.tmp").mkdir()
    resumed = pretrain(run_cfg(shards, "part"), quiet=True)
    assert resumed.losses == full.losses  # bit for bit on a CPU
    assert resumed.val_losses == full.val_losses
    a = load_file(shards / "full/checkpoints/step_00000008/model.safetensors")
    b = load_file(shards / "part/checkpoints/step_00000008/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [json.loads(line) for line in (shards / "part/metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in lines) and lines[-1]["step"] == 8
    # the checkpoint is a model directory in its own right
    model = Llama.load(shards / "full/checkpoints/step_00000008")
    assert torch.equal(model.output.weight, a["output.weight"])


def test_killed_run_resumes_exactly(shards, curate_exe):
    """SIGKILL a CLI run just after a checkpoint; resuming reproduces the uninterrupted curve."""
    import signal
    import time

    import yaml

    cfg = run_cfg(shards, "killed", steps=120, ckpt_every=5, eval_every=60)
    (shards / "killed.yaml").write_text(yaml.safe_dump(cfg))
    curate = curate_exe
    proc = subprocess.Popen([curate, "train", "pretrain", str(shards / "killed.yaml")], env={
        **os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (shards / "killed/checkpoints/step_00000010").exists() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    resumed = pretrain(cfg, quiet=True)
    full = pretrain(run_cfg(shards, "unkilled", steps=120, ckpt_every=0, eval_every=60), quiet=True)
    assert resumed.losses == full.losses and resumed.val_losses == full.val_losses


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_equal_one(shards, curate_exe):
    import yaml

    single = pretrain(run_cfg(shards, "single", steps=4, batch_size=4, grad_accum=2, eval_every=2, log_every=1),
                      quiet=True)
    cfg = run_cfg(shards, "ddp", steps=4, batch_size=2, grad_accum=2, eval_every=2, log_every=1)
    (shards / "ddp.yaml").write_text(yaml.safe_dump(cfg))
    curate = curate_exe
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([curate, "train", "pretrain", str(shards / "ddp.yaml")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    state = json.loads((shards / "ddp/checkpoints/step_00000004/state.json").read_text())
    assert state["losses"] == pytest.approx(single.losses, rel=1e-5)
    assert [v for _, v in state["val_losses"]] == pytest.approx([v for _, v in single.val_losses], rel=1e-5)
    # Adam hides a wrongly scaled gradient; the logged gradient norms do not
    norms = [[r["grad_norm"] for r in map(json.loads, (shards / run / "metrics.jsonl").read_text().splitlines())
              if "grad_norm" in r] for run in ("single", "ddp")]
    assert len(norms[0]) == 4 and norms[1] == pytest.approx(norms[0], rel=1e-5)
    ddp = load_file(shards / "ddp/checkpoints/step_00000004/model.safetensors")
    for name, p in single.model.state_dict().items():
        torch.testing.assert_close(ddp[name], p, atol=1e-5, rtol=1e-4, msg=name)


def test_config_errors_and_cli(shards, tmp_path):
    from pathlib import Path

    from train.config import SFTConfig

    examples = Path(__file__).resolve().parents[1] / "examples/train"
    assert load_config(examples / "pretrain.yaml", PretrainConfig).train.grad_accum == 2
    assert load_config(examples / "sft.yaml", SFTConfig).template == "llama2"
    with pytest.raises(CurateError, match="unknown key 'stpes'"):
        load_config({**run_cfg(shards, "x"), "train": {"stpes": 3}}, PretrainConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_dir: x\nshards: y\nmodle: tiny\n")
    r = CliRunner().invoke(cli, ["train", "pretrain", str(bad)])
    assert r.exit_code == 2 and "unknown key 'modle'" in r.output and len(r.output.strip().splitlines()) == 1
    ckpt = shards / "full/checkpoints/step_00000008"
    if not ckpt.is_dir():
        pretrain(run_cfg(shards, "full"), quiet=True)
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "export-hf", str(ckpt), str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    transformers = pytest.importorskip("transformers")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf")
    ours = Llama.load(ckpt)
    tokens = torch.randint(0, 512, (1, 12))
    torch.testing.assert_close(hf(tokens).logits, ours(tokens), atol=1e-4, rtol=1e-4)
    r = runner.invoke(cli, ["generate", str(ckpt), "--tokenizer", str(shards / "bpe.model"), "--prompt",
                            "The", "--max-new-tokens", "5", "--temperature", "0"])
    assert r.exit_code == 0 and r.output.startswith("The"), r.output


@pytest.mark.slow
def test_fsdp2_two_cpu_processes_equal_one(shards, curate_exe):
    import yaml

    single = pretrain(run_cfg(shards, "single_f", steps=3, batch_size=4, eval_every=0), quiet=True)
    cfg = run_cfg(shards, "fsdp", steps=3, batch_size=2, eval_every=0, distributed="fsdp")
    (shards / "fsdp.yaml").write_text(yaml.safe_dump(cfg))
    curate = curate_exe
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), curate, "train", "pretrain", str(shards / "fsdp.yaml")]
    r = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    state = json.loads((shards / "fsdp/checkpoints/step_00000003/state.json").read_text())
    assert state["losses"] == pytest.approx(single.losses, rel=1e-5)
    sharded = load_file(shards / "fsdp/checkpoints/step_00000003/model.safetensors")  # gathered, full tensors
    for name, p in single.model.state_dict().items():
        torch.testing.assert_close(sharded[name], p, atol=1e-5, rtol=1e-4, msg=name)


def test_activation_checkpointing_gives_the_same_step():
    x = torch.randint(0, 64, (2, 17))
    batch = {"inputs": x[:, :-1], "targets": x[:, 1:]}
    outs = []
    for recompute in (False, True):
        cfg = TrainConfig(activation_checkpointing=recompute)
        torch.manual_seed(1)
        from train.trainer import prepare_model

        model = prepare_model(Llama(get_config("tiny", vocab_size=64)), cfg, World())
        calls = []
        model.layers[0].attention.register_forward_hook(lambda *_: calls.append(1))
        out = train_step(model, build_optimizer(model, cfg), [batch], World(), cfg, lr=1e-2)
        assert len(calls) == (2 if recompute else 1)  # the backward pass re-ran the block
        outs.append((out["grad_norm"], model.output.weight.detach().clone(), list(model.state_dict())))
    assert outs[0][0] == pytest.approx(outs[1][0], rel=1e-6)
    torch.testing.assert_close(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2]  # parameter names unchanged, so checkpoints interchange
