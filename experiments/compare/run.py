"""Compare annotation vendors by what their data does to a model (``curate vendors compare``).

Each vendor's SFT conversations become an arm of :mod:`experiments.compare.arms`: the same base
checkpoint, tokenizer, template, hyperparameters and steps for all, budgets equalised,
S paired seeds. All are scored on one held-out set with reference answers, from which every
prompt that any vendor also has is removed first (decontamination). The result holds:

* per vendor: held-out answer loss (nats/token, lower is better), mean and 95% interval;
  per pair: the difference, its interval and a verdict (:mod:`experiments.stats`);
* the same for prompt-following (higher is better): the held-out answer loss after a mismatched
  prompt minus after the right one, per fine-tuned model. The mismatches are drawn once
  (``mismatch_seed``) and shared by every arm. Answers that do not fit their prompts teach a
  model to ignore the prompt, which this sees where the loss (mostly fluency) does not;
* the win-rate matrix (per prompt and seed, whose held-out loss is lower; with a reward model,
  whose generated answer the reward model prefers, and the mean reward per vendor);
* what the metric can see: the base model's prompt-conditioning gain, and the noise floor
  (the difference between two arms trained on random halves of one vendor);
* the vendor profile, cost per point (price of the examples used per 0.01 nats gained over
  the base model), loss curves, and a manifest to reproduce the run.

Config (YAML, paths relative to it)::

    vendors: vendors.yaml        # the vendors file of `curate vendors profile`
    base: out/base               # checkpoint (Llama.save or Hugging Face directory)
    tokenizer: out/base/tokenizer.model   # default: the base folder's tokenizer
    heldout: heldout.json        # conversations with reference answers (any SFT format)
    heldout_size: 150            # sampled after decontamination (seeded)
    seeds: 3
    budget: tokens               # tokens | examples | all
    noise_floor: acme            # vendor split in halves; default the first; null to skip
    reward_model: null           # a train/reward.py directory: adds reward scores and win rates
    train: {lr: 1.0e-3, batch_size: 8, seq_len: 256}
    method: full                 # or lora (lora: {rank: 8, alpha: 16, targets: [q, k, v, o]})
"""
from __future__ import annotations

import copy
import json
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import curate
from annotations.formats import read_file
from annotations.profile import profile_vendors
from annotations.records import PreferencePair
from annotations.vendors import load_config as load_vendors
from annotations.vendors import read_vendor
from curate.basics.device import resolve_device
from curate.basics.errors import CurateError
from curate.basics.files import file_sha256, write_json
from curate.basics.yamlconfig import check_keys, read_yaml_mapping
from curate.dedup.decontam import decontaminate as scan
from curate.dedup.normalize import normalize_words
from experiments import stats
from experiments.compare.arms import Arm, Harness, Settings, fingerprint, metric
from experiments.report import write_report
from experiments.results import Comparison, VendorSummary
from train.api import (RewardModel, generate, load_examples, load_model, lora_config, prompt_ids, resolve_template, score,
                       train_reward_model)
from train.tokenizer import Tokenizer


@dataclass
class CompareConfig:
    vendors: str
    base: str
    heldout: str
    tokenizer: str | None = None         # default: the base folder's tokenizer.model / tokenizer.json
    out: str | None = None
    heldout_size: int = 150
    seeds: int = 3
    budget: str = "tokens"
    max_budget: int | None = None
    steps: int | None = None
    epochs: float = 2.0
    template: str | None = None          # llama2 | plain; default: the tokenizer's chat template, else llama2
    train: dict = field(default_factory=dict)
    noise_floor: str | bool | None = True
    reward_model: str | None = None
    reward_data: str | None = None
    reward_train: dict = field(default_factory=dict)
    max_new_tokens: int = 64
    decontam_ngram: int = 8
    lid_model: str | None = None
    n_boot: int = 2000
    seed: int = 0
    method: str = "full"
    lora: dict = field(default_factory=dict)
    mismatch_seed: int = 0

    def __post_init__(self):
        try:  # checked now, before the plan is written, not when the first arm trains
            lora_config(self.method, self.lora)
        except (TypeError, ValueError) as e:
            raise CurateError(f"compare config: {e}") from None

    def settings(self) -> Settings:
        base = Settings()
        return Settings(seeds=self.seeds, budget=self.budget, max_budget=self.max_budget, steps=self.steps,
                        epochs=self.epochs, template=self.template, train={**base.train, **self.train},
                        method=self.method, lora=dict(self.lora), mismatch_seed=self.mismatch_seed)


def load_config(path) -> CompareConfig:
    """A CompareConfig from YAML (``yaml.safe_load``); relative paths resolve against the file."""
    path = Path(path)
    return config_from_dict(read_yaml_mapping(path), path.parent)


def config_from_dict(raw, base_dir: Path = Path(".")) -> CompareConfig:
    check_keys(raw, CompareConfig, ("vendors", "base", "heldout"), "compare config")
    raw = dict(raw)
    for key in ("vendors", "base", "tokenizer", "heldout", "reward_model", "reward_data", "lid_model", "out"):
        if raw.get(key):
            raw[key] = str((Path(base_dir) / raw[key]).resolve())
    return CompareConfig(**raw)


# --------------------------------------------------------------------------- data

def vendor_examples(datas) -> dict[str, list[dict]]:
    """Vendor name -> its SFT conversations as ``{"messages": [...]}`` (preference and KTO
    records are not SFT data and are left out; the profile still counts them)."""
    out = {}
    for d in datas:
        out[d.vendor.name] = [{"messages": r.messages} for r in d.records if r.kind == "sft"]
    return out


def decontaminate(heldout: list[dict], vendors: dict[str, list[dict]], ngram: int = 8) -> tuple[list[dict], int]:
    """Drop held-out conversations whose prompt any vendor also has: the same normalised prompt,
    or a shared word ``ngram``-gram (curate.dedup.decontam). Returns ``(kept, dropped)``."""
    prompts = [_user_text(ex) for ex in heldout]
    train = [_user_text(ex) for exs in vendors.values() for ex in exs]
    hit = np.zeros(len(prompts), dtype=bool)
    if train and prompts:
        hit |= scan(train, prompts, method="ngram", ngram=ngram).fractions > 0
    seen = {normalize_words(t) for t in train}
    hit |= np.array([normalize_words(p) in seen for p in prompts], dtype=bool)
    return [ex for ex, h in zip(heldout, hit) if not h], int(hit.sum())


def _user_text(example: dict) -> str:
    return "\n".join(m["content"] for m in example["messages"][:-1] if m["role"] == "user")


def load_heldout(path) -> list[dict]:
    """Conversations from an SFT file (any format train.sft reads) that end in an answer."""
    return [ex for ex in load_examples(path) if _usable(ex)]


def _usable(ex) -> bool:
    msgs = ex.get("messages") if isinstance(ex, dict) else None
    return (isinstance(msgs, list) and len(msgs) >= 2 and all(isinstance(m, dict) and isinstance(m.get("content"), str)
            for m in msgs) and msgs[-1].get("role") == "assistant" and msgs[-1]["content"].strip() != "")


def sample(items: list, size: int, seed: int) -> list:
    """``size`` items drawn without replacement (seeded), in their original order."""
    if len(items) <= size:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size, replace=False))
    return [items[i] for i in keep]


# --------------------------------------------------------------------------- degraded copies (planted truths)

def replace_words(examples: list[dict], fraction: float, seed: int) -> list[dict]:
    """Copies whose answers have ``fraction`` of their words replaced by words drawn at random
    from all the answers' words (seeded)."""
    rng = np.random.default_rng(seed)
    vocab = [w for ex in examples for w in ex["messages"][-1]["content"].split()]
    out = []
    for ex in examples:
        words = ex["messages"][-1]["content"].split()
        hit = rng.random(len(words)) < fraction
        picks = rng.integers(0, len(vocab), len(words))
        words = [vocab[p] if h else w for w, h, p in zip(words, hit, picks)]
        out.append(_with_answer(ex, " ".join(words)))
    return out


def truncate_answers(examples: list[dict], keep: float) -> list[dict]:
    """Copies whose answers keep their first ``keep`` share of words (at least one)."""
    out = []
    for ex in examples:
        words = ex["messages"][-1]["content"].split()
        out.append(_with_answer(ex, " ".join(words[: max(1, round(len(words) * keep))])))
    return out


def shuffle_answers(examples: list[dict], seed: int) -> list[dict]:
    """Copies in which every answer moved to another example's prompt (a seeded derangement)."""
    n = len(examples)
    perm = np.random.default_rng(seed).permutation(n)
    donor = np.empty(n, dtype=int)
    donor[perm] = np.roll(perm, 1)
    return [_with_answer(ex, examples[donor[i]]["messages"][-1]["content"]) for i, ex in enumerate(examples)]


def _with_answer(ex: dict, answer: str) -> dict:
    return {"messages": ex["messages"][:-1] + [{"role": "assistant", "content": answer}]}


# --------------------------------------------------------------------------- the comparison

def compare(vendors: dict[str, list[dict]], base, tokenizer, heldout: list[dict], settings: Settings,
            out: str | Path, noise_floor: str | None = None, prices: dict | None = None, reward=None,
            max_new_tokens: int = 64, n_boot: int = 2000, seed: int = 0, quiet: bool = True,
            workers: int = 1, executor: str = "local", address: str | None = None) -> dict:
    """Run the comparison in ``out`` (resumable) and return the JSON-ready result.
    ``workers``: (vendor, seed) runs in that many processes, one per device; ``executor="ray"``:
    one Ray task (one GPU) per run on the cluster at ``address``. Results equal a sequential run's.

    ``vendors``: name -> conversations; ``heldout``: already decontaminated. ``noise_floor``: the
    vendor whose two random halves (per seed) measure the noise floor, or None. ``reward``:
    ``(reward_model, reward_tokenizer)`` to score greedy answers, or None."""
    if not heldout:
        raise CurateError("no held-out prompt is left after decontamination")
    arms = [Arm(name, exs, price_per_example=(prices or {}).get(name)) for name, exs in vendors.items()]
    if noise_floor:
        if noise_floor not in vendors:
            raise CurateError(f"noise_floor: no vendor named {noise_floor!r}")
        arms += [Arm(f"{noise_floor} (half {k + 1})", vendors[noise_floor], group="noise", part=(k, 2))
                 for k in range(2)]
    harness = Harness(arms, base, tokenizer, heldout, settings, out)
    scorer = _reward_scorer(reward, tokenizer, harness.heldout, settings.template, max_new_tokens) if reward else None
    results = harness.run(scorer, quiet=quiet, workers=workers, executor=executor, address=address)
    base_path = Path(out) / "base.json"
    base_losses = json.loads(base_path.read_text()) if base_path.is_file() else {}
    if "heldout" not in base_losses:
        base_losses = harness.base_losses()
        write_json(base_path, base_losses, indent=None, newline=False)
    return summarize(harness, results, base_losses, list(vendors), noise_floor, n_boot, seed).to_dict()


def summarize(harness: Harness, results: dict, base_losses: dict, names: list[str], noise_arm: str | None,
              n_boot: int = 2000, seed: int = 0) -> Comparison:
    """The result from finished runs (see the module docstring)."""
    losses = metric(results)
    main = {n: losses[n] for n in names}
    loss_stats = stats.compare_arms(main, higher_is_better=False, n_boot=n_boot, seed=seed)
    out = Comparison(metric="held-out answer loss (nats/token, lower is better)", loss=loss_stats,
                     win_rate_loss=stats.win_rates(main, higher_is_better=False, n_boot=n_boot, seed=seed),
                     conditioning=stats.conditioning_gain(base_losses["right"], base_losses["mismatched"], n_boot,
                                                          seed),
                     base_loss=float(np.nanmean(base_losses["heldout"])))
    if noise_arm:
        halves = [f"{noise_arm} (half {k + 1})" for k in range(2)]
        out.noise_floor = {"vendor": noise_arm, "arms": halves,
                           **stats.noise_floor(losses[halves[0]], losses[halves[1]], n_boot, seed),
                           "half_vs_half": stats.compare_arms({h: losses[h] for h in halves}, n_boot=n_boot,
                                                              seed=seed)["pairs"][f"{halves[0]}|{halves[1]}"]}
        for pair in loss_stats["pairs"].values():
            pair["below_noise_floor"] = abs(pair["diff"]) < out.noise_floor["floor"]
    following = metric(results, "prompt_following")
    if all(n in following for n in names):
        out.prompt_following = stats.compare_arms({n: following[n] for n in names}, higher_is_better=True,
                                                  n_boot=n_boot, seed=seed)
        if noise_arm and all(h in following for h in halves):
            floor = stats.noise_floor(following[halves[0]], following[halves[1]], n_boot, seed)
            half = stats.compare_arms({h: following[h] for h in halves}, higher_is_better=True, n_boot=n_boot,
                                      seed=seed)["pairs"][f"{halves[0]}|{halves[1]}"]
            out.prompt_following["noise_floor"] = {**floor, "half_vs_half": half}
            for pair in out.prompt_following["pairs"].values():
                pair["below_noise_floor"] = abs(pair["diff"]) < floor["floor"]
    rewards = metric(results, "reward")
    if all(n in rewards for n in names):
        out.reward = stats.compare_arms({n: rewards[n] for n in names}, higher_is_better=True, n_boot=n_boot,
                                        seed=seed)
        out.win_rate_reward = stats.win_rates({n: rewards[n] for n in names}, higher_is_better=True,
                                              n_boot=n_boot, seed=seed)
    for arm in harness.arms:
        out.vendors[arm.name] = vendor_summary(arm, harness, results[arm.name], losses[arm.name], out.base_loss)
    out.matched = _matched(harness, names)
    out.heldout_scored = {"prompts": len(harness.heldout), "unscorable": harness.heldout_unscorable}
    out.plan = {k: v for k, v in harness.plan.items() if not k.startswith("_")}
    return out


def vendor_summary(arm: Arm, harness: Harness, runs: list[dict], losses: np.ndarray, base_loss: float
                   ) -> VendorSummary:
    """One arm's figures, averaged over its seeds' ``runs``."""
    gain = base_loss - float(np.mean(losses))
    used = float(np.mean([r["examples"] for r in runs]))
    cost = None if arm.price_per_example is None else arm.price_per_example * used
    return VendorSummary(
        group=arm.group, pool=len(arm.examples), skipped=len(harness.skipped[arm.name]), examples_used=used,
        answer_tokens_used=float(np.mean([r["answer_tokens"] for r in runs])),
        price_per_example=arm.price_per_example, cost=cost, gain_over_base=gain,
        cost_per_point=cost / (gain * 100) if cost is not None and gain > 0 else None,
        train_seconds=float(np.sum([r["train_seconds"] for r in runs])),
        train_loss=np.mean([r["train_loss"] for r in runs], axis=0).round(5).tolist(),
        val_curve=[[step, float(np.mean([r["val_curve"][i][1] for r in runs]))]
                   for i, (step, _) in enumerate(runs[0]["val_curve"])])


def _matched(harness: Harness, names: list[str]) -> dict[str, float]:
    """Per vendor pair, the share of the smaller subsample whose prompts the other drew too (mean over seeds)."""
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shares = []
            for seed in range(harness.settings.seeds):
                ka = {harness.keys[a][j] for j in harness.plan["_subsets"][a][seed]}
                kb = {harness.keys[b][j] for j in harness.plan["_subsets"][b][seed]}
                shares.append(len(ka & kb) / max(1, min(len(ka), len(kb))))
            out[f"{a}|{b}"] = round(float(np.mean(shares)), 4)
    return out


def _reward_scorer(reward, tokenizer, heldout, template, max_new_tokens):
    """A Harness scorer: greedy answers to the held-out prompts, scored by the reward model."""
    rm, rm_tokenizer = reward
    prompts = [ex["messages"][:-1] for ex in heldout]
    ids = [prompt_ids(ex, tokenizer, template) for ex in heldout]

    def scorer(model, seed):
        rm.to(model.output.weight.device)
        room = model.cfg.max_seq_len - max_new_tokens
        outs = generate(model, [p[-room:] for p in ids], max_new_tokens, temperature=0.0, seed=seed,
                        eos_id=tokenizer.eos_id)
        answers = [tokenizer.decode(o) for o in outs]
        return {"reward": [round(float(x), 5) for x in score(rm, rm_tokenizer, prompts, answers, template=template)],
                "answers_sample": answers[:3]}

    return scorer


def run_config(cfg: CompareConfig, out: str | Path | None = None, quiet: bool = True, workers: int = 1,
               executor: str = "local", address: str | None = None) -> dict:
    """Everything `curate vendors compare` does: read, profile, decontaminate, train, report.
    Returns the result dict (also written as compare.json + compare.html in the output folder)."""
    out = Path(out or cfg.out or "out/compare")
    datas = [read_vendor(v) for v in load_vendors(cfg.vendors)]
    vendors = vendor_examples(datas)
    empty = [n for n, exs in vendors.items() if not exs]
    if empty:
        raise CurateError(f"vendor {empty[0]!r} has no SFT conversations to train on")
    tokenizer, sp_model = _tokenizer(cfg.tokenizer or cfg.base)
    try:
        cfg = replace(cfg, template=resolve_template(cfg.template, tokenizer))
    except ValueError as e:
        raise CurateError(f"compare config: {e}") from None
    profile = profile_vendors(datas, lid_model=cfg.lid_model, tokenizer=sp_model)
    if resolve_device(cfg.train.get("device", "auto")) == "cuda":  # the base is evaluated where the arms train
        # a LoRA base stays frozen: read in bf16 straight onto the GPU, shared by every arm
        dtype = torch.bfloat16 if cfg.method == "lora" else torch.float32
        base = load_model(cfg.base, device="cuda", dtype=dtype)
    else:
        base = load_model(cfg.base)
    heldout, dropped = decontaminate(load_heldout(cfg.heldout), vendors, cfg.decontam_ngram)
    heldout = sample(heldout, cfg.heldout_size, cfg.seed)
    reward, reward_info = None, None
    if cfg.reward_model:
        reward = (RewardModel.load(cfg.reward_model), Tokenizer.from_file(cfg.reward_model))
        reward_info = {"path": cfg.reward_model, **reward[0].info}
    elif cfg.reward_data:
        reward, reward_info = train_reward(cfg, datas, vendors, base, tokenizer, out / "reward_model")
    noise = cfg.noise_floor
    noise = (next(iter(vendors)) if noise is True else noise) or None
    prices = {d.vendor.name: d.vendor.price_per_example for d in datas}
    result = compare(vendors, base, tokenizer, heldout, cfg.settings(), out, noise, prices, reward,
                     cfg.max_new_tokens, cfg.n_boot, cfg.seed, quiet, workers, executor, address)
    result["heldout"] = {"path": cfg.heldout, "size": len(heldout), "dropped_contaminated": dropped}
    result["profile"] = profile
    result["reward_model"] = reward_info
    result["manifest"] = manifest(cfg, datas, heldout)
    write_report(result, out)
    return result


def _tokenizer(source) -> tuple[Tokenizer, str | None]:
    """The tokenizer at ``source`` (a file, or a model folder holding one), and the path of its
    SentencePiece model when it is one (the profile's token lengths need it)."""
    path = Path(source)
    try:
        tok = Tokenizer.from_file(path)
    except (OSError, RuntimeError, ValueError) as e:
        raise CurateError(f"cannot load tokenizer {source}: {e}") from None
    sp_model = path / "tokenizer.model" if path.is_dir() else path
    return tok, str(sp_model) if sp_model.suffix == ".model" and sp_model.is_file() else None


def train_reward(cfg: CompareConfig, datas, vendors: dict, base, tokenizer, out: Path):
    """A reward model trained from the base on ``cfg.reward_data`` (preference pairs that are not
    a vendor's: the file may not be one of the vendors' files, and pairs whose prompt any vendor
    has are dropped). Saved in ``out`` and reused on resume. Returns ``((rm, tokenizer), info)``."""
    if (out / "reward.json").is_file() and (out / "summary.json").is_file():
        return (RewardModel.load(out), tokenizer), json.loads((out / "summary.json").read_text())
    path = Path(cfg.reward_data).resolve()
    if any(Path(f["path"]).resolve() == path for d in datas for f in d.files):
        raise CurateError(f"reward_data {path} is a vendor's file: the judge must not come from a vendor under test")
    records, _ = read_file(path, vendor="reward")
    pairs = [r for r in records if isinstance(r, PreferencePair)]
    convs = [{"messages": r.prompt + [{"role": "assistant", "content": r.chosen}]} for r in pairs]
    kept, dropped = decontaminate(convs, vendors, cfg.decontam_ngram)
    kept_ids = {id(c) for c in kept}
    pairs = [p for p, c in zip(pairs, convs) if id(c) in kept_ids]
    if len(pairs) < 10:
        raise CurateError(f"reward_data: only {len(pairs)} usable preference pairs after decontamination")
    hp = {"lr": 1e-4, "batch_size": 8, **cfg.reward_train}
    rm, res = train_reward_model(pairs, tokenizer, copy.deepcopy(base), template=cfg.template,
                                 max_len=int(cfg.settings().max_len - 1), hyperparams=hp, seed=cfg.seed)
    info = {"path": str(path), "pairs": len(pairs), "dropped_vendor_prompts": dropped, "accuracy": res.accuracy,
            "train_accuracy": res.train_accuracy, "steps": res.steps}
    rm.save(out)
    write_json(out / "summary.json", info, indent=1, newline=False)
    return (rm, tokenizer), info


def manifest(cfg: CompareConfig, datas, heldout) -> dict:
    """What reproduces the run: the config and its hash, data hashes, versions."""
    files = {f["path"]: file_sha256(f["path"])[:16] for d in datas for f in d.files}
    for key in ("base", "tokenizer", "heldout", "reward_model"):
        path = getattr(cfg, key)
        if path and Path(path).is_file():
            files[path] = file_sha256(path)[:16]
        elif path and Path(path).is_dir():
            files.update({str(p): file_sha256(p)[:16] for p in sorted(Path(path).iterdir()) if p.is_file()})
    return {"config": asdict(cfg), "config_hash": fingerprint(asdict(cfg)), "files": files,
            "heldout_hash": fingerprint(heldout),
            "versions": {"curate": curate.__version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()}}
