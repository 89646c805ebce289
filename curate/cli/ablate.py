"""``curate ablate data CONFIG`` and ``curate ablate arch CONFIG``: thin layers over
:func:`experiments.ablate.data.run_ablation` and :func:`experiments.ablate.arch.run_arch`."""
from __future__ import annotations

from pathlib import Path

import click

from experiments.ablate.arch import load_arch_config, run_arch
from experiments.ablate.data import load_config, run_ablation


@click.group("ablate")
def ablate_group():
    """Ablations: data recipes and architecture choices, over paired seeds with intervals."""


@ablate_group.command("data")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: the config's `out`, else out/ablate). Rerun to resume.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def data_cmd(config, out, quiet):
    """Train the same model on each data recipe in CONFIG and compare held-out loss.

    \b
    Example:
      curate ablate data examples/ablate/sft_clean_vs_noisy.yaml --out out/ablate_sft
    """
    cfg = load_config(config)
    result = run_ablation(cfg, out, quiet=quiet)
    for name, arm in result["arms"].items():
        a, eff = result["loss"]["arms"].get(name), arm["effect"]
        if a is None:  # a noise-floor half
            continue
        line = f"{name}: held-out loss {a['mean']:.4f} [{a['lo']:.4f}, {a['hi']:.4f}]"
        if eff:
            line += f"; vs {result['baseline']} {eff['diff']:+.4f} [{eff['lo']:+.4f}, {eff['hi']:+.4f}] {eff['verdict']}"
        click.echo(line)
    if "noise_floor" in result:
        click.echo(f"noise floor (two random halves of {cfg.noise_floor}): {result['noise_floor']['floor']:.4f}")
    click.echo(f"wrote {Path(out or cfg.out or 'out/ablate') / 'ablate.html'}")


@ablate_group.command("arch")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: the config's `out`, else out/ablate_arch). Rerun to resume.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def arch_cmd(config, out, quiet):
    """Compare MHA, GQA and MQA variants at equal parameter count (loss, KV cache, speed).

    \b
    Example:
      curate ablate arch examples/ablate/arch.yaml --out out/ablate_arch
    """
    cfg = load_arch_config(config)
    result = run_arch(cfg, out, quiet=quiet)
    for name, v in result["variants"].items():
        line = (f"{name}: {v['params_non_embedding']:,} non-embedding params ({100 * v['params_vs_baseline']:+.2f}%), "
                f"KV {v['kv_bytes_per_token_bf16']:,} B/token (bf16)")
        if "loss" in result:
            a = result["loss"]["arms"][name]
            line += f", held-out loss {a['mean']:.4f} [{a['lo']:.4f}, {a['hi']:.4f}]"
        click.echo(line)
    click.echo(f"wrote {Path(out or cfg.out or 'out/ablate_arch') / 'arch.html'}")
