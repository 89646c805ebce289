"""``curate train ...``, ``curate generate`` and ``curate shards tokenize``.

Every command is a thin layer over the Python API (``train.run``, ``train.data``,
``train.tokenizer``, ``train.generate``); user errors are CurateError (one line, exit 2).
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import click

from curate.basics.device import resolve_device
from curate.basics.errors import CurateError
from curate.basics.texts import read_texts
from curate.cli.reward import rm_cmd
from train.config import PretrainConfig, load_config
from train.data import tokenize_shards
from train.generate import generate
from train.hf import save_hf
from train.run import load_model, pretrain, sft
from train.tokenizer import Tokenizer, train_bpe


def _load_tokenizer(path):
    try:
        return Tokenizer.from_file(path)
    except (OSError, RuntimeError, ValueError) as e:
        raise CurateError(f"cannot load tokenizer {path}: {e}") from None


@click.group("train")
def train_group():
    """Train Llama 2 models: pretraining, SFT, tokenizers, Hugging Face export."""


@train_group.command("pretrain")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--resume/--no-resume", default=None, help="Continue from the run's latest checkpoint (config default: yes).")
def pretrain_cmd(config, resume):
    """Pretrain on token shards as described by CONFIG (YAML). Works under torchrun.

    Rerunning resumes from the run's latest checkpoint and continues exactly.

    \b
    Example:
      curate train pretrain examples/train/pretrain.yaml
      torchrun --nproc_per_node 8 $(which curate) train pretrain examples/train/pretrain.yaml
    """
    cfg = load_config(config, PretrainConfig)
    if resume is not None:
        cfg = replace(cfg, resume=resume)
    result = pretrain(cfg)
    click.echo(f"done: {result.steps} steps, final held-out loss {result.final_val_loss}, run in {result.run_dir}")


@train_group.command("sft")
@click.argument("config", type=click.Path(dir_okay=False))
def sft_cmd(config):
    """Supervised fine-tuning as described by CONFIG (YAML): prompt tokens masked, answers
    followed by EOS, examples packed without attending to each other.

    \b
    Example:
      curate train sft examples/train/sft.yaml
    """
    _, result = sft(config, quiet=False)
    click.echo(f"done: {result.steps} steps, final held-out loss {result.final_val_loss}, "
               f"{len(result.skipped)} examples skipped, run in {result.run_dir}")


@train_group.command("export-hf")
@click.argument("ckpt", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--tokenizer", type=click.Path(), help="Copy this tokenizer.model / tokenizer.json beside the weights.")
def export_hf_cmd(ckpt, out, tokenizer):
    """Write checkpoint CKPT as a Hugging Face LlamaForCausalLM directory OUT.

    \b
    Example:
      curate train export-hf runs/pretrain-small/checkpoints/step_00002000 out/hf --tokenizer runs/tok/tokenizer.model
    """
    model = load_model(ckpt)
    save_hf(model, out)
    if tokenizer:
        shutil.copy(tokenizer, Path(out) / Path(tokenizer).name)
    click.echo(f"wrote {out}")


@train_group.command("tokenizer")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the tokenizer.model.")
@click.option("--vocab-size", default=32000, show_default=True)
@click.option("--text-column", default="text", show_default=True)
@click.option("--seed", default=0, show_default=True)
def tokenizer_cmd(inputs, out, vocab_size, text_column, seed):
    """Train a Llama-2-style BPE tokenizer (byte fallback, split digits) on INPUTS
    (curated .parquet shards, .jsonl or .txt).

    \b
    Example:
      curate train tokenizer out/web/data/*.parquet --out runs/tok/tokenizer.model --vocab-size 8000
    """
    try:
        tok = train_bpe(read_texts(list(inputs), text_column), vocab_size, out, seed=seed)
    except (ValueError, RuntimeError) as e:
        raise CurateError(f"tokenizer training failed: {e}") from None
    click.echo(f"wrote {out} ({tok.vocab_size} pieces)")


@click.command("generate")
@click.argument("ckpt", type=click.Path(file_okay=False))
@click.option("--prompt", "prompts", multiple=True, required=True, help="Repeat for a batch.")
@click.option("--tokenizer", type=click.Path(), help="Default: tokenizer.model / tokenizer.json in CKPT.")
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--top-p", default=0.95, show_default=True)
@click.option("--seed", default=0, show_default=True)
def generate_cmd(ckpt, prompts, tokenizer, max_new_tokens, temperature, top_p, seed):
    """Sample continuations of each --prompt from checkpoint CKPT (ours or a Hugging Face
    Llama directory), batched with a KV cache.

    \b
    Example:
      curate generate out/hf --prompt "The capital of France is" --max-new-tokens 32
    """
    import torch

    tok = _load_tokenizer(tokenizer or ckpt)
    model = load_model(ckpt)
    if resolve_device() == "cuda":
        model = model.to("cuda", torch.bfloat16)
    model.eval()
    try:
        out = generate(model, [tok.encode(p) for p in prompts], max_new_tokens, temperature, top_p,
                       seed, tok.eos_id)
    except ValueError as e:
        raise CurateError(str(e)) from None
    for prompt, ids in zip(prompts, out):
        click.echo(prompt + tok.decode(ids))


@click.group("shards")
def shards_group():
    """Token shards for pretraining."""


@shards_group.command("tokenize")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--tokenizer", required=True, type=click.Path(), help="tokenizer.model or tokenizer.json")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--dtype", type=click.Choice(["uint16", "uint32"]), help="Default: uint16 if the vocabulary fits.")
@click.option("--text-column", default="text", show_default=True)
def tokenize_cmd(inputs, tokenizer, out, dtype, text_column):
    """Tokenize curated Parquet shards INPUTS into packed token shards in OUT
    (uint16/uint32 memory-mapped files with an index; EOS between documents).

    \b
    Example:
      curate shards tokenize out/web/data/*.parquet --tokenizer runs/tok/tokenizer.model --out runs/shards
    """
    index = tokenize_shards(inputs, _load_tokenizer(tokenizer), out, dtype=dtype, text_column=text_column)
    skipped = sum(index["skipped"].values())
    click.echo(f"wrote {out}: {index['num_docs']} documents, {index['total_tokens']:,} tokens "
               f"({index['dtype']}, {len(index['files'])} files), {skipped} empty rows skipped")


train_group.add_command(rm_cmd)  # reward models live in their own module
