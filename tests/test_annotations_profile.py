"""annotations.vendors / profile / report / cli: counts add up, the overlap matrix finds
a planted shared subset, data is escaped in the HTML, and the page renders in Chromium."""
import json
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from annotations.profile import profile_vendors
from annotations.records import prompt_text
from annotations.report import render_html
from annotations.vendors import load_config, read_vendor
from curate.basics.errors import CurateError
from curate.cli import cli
from curate.dedup.normalize import normalize_words

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["summary", "lengths", "checks", "overlap", "scores", "worst"]
SCRIPT = '<script>alert("owned")</script>'
ODD_VENDOR = 'beta & <i>co</i>'


@pytest.fixture(scope="module")
def vendor_config(shared, tmp_path_factory):
    """Three vendors from real data: beta resells 20 of alpha's prompts and sends one
    truncated file; alpha has a record with a <script> and a placeholder planted."""
    sft = shared / "data" / "sft"
    tmp = tmp_path_factory.mktemp("vendors")
    alpaca = json.loads((sft / "alpaca_en_demo.json").read_text())
    alpha = alpaca[:100] + [{"instruction": "Greet the user.", "input": "",
                             "output": f"Hello from {{{{name}}}}! {SCRIPT}"}]
    (tmp / "alpha.json").write_text(json.dumps(alpha))
    resold = alpaca[:20]  # the planted shared subset, as chat messages
    beta = [{"messages": [{"role": "user", "content": (e["instruction"] + "\n\n" + e["input"]).strip()},
                          {"role": "assistant", "content": e["output"]}]} for e in alpaca[100:180] + resold]
    (tmp / "beta.jsonl").write_text("".join(json.dumps(e) + "\n" for e in beta))
    text = json.dumps(alpaca[180:186])
    (tmp / "beta_cut.json").write_text(text[: text.index(alpaca[184]["instruction"])])  # breaks inside element 4
    for name in ("dpo_en_demo.json", "kto_en_demo.json"):
        (tmp / name).write_text(json.dumps(json.loads((sft / name).read_text())[:40]))
    (tmp / "config.yaml").write_text(f"""
vendors:
  - name: alpha
    price_per_example: 0.5
    files: [alpha.json]
  - name: "{ODD_VENDOR}"
    files:
      - path: beta.jsonl
      - path: beta_cut.json
        annotator: night-shift
  - name: gamma
    files:
      - dpo_en_demo.json
      - path: kto_en_demo.json
        format: kto
""")
    return tmp / "config.yaml"


@pytest.fixture(scope="module")
def reward_model(shared, tmp_path_factory):
    """A tiny randomly initialised train.reward model with the shared tokenizer: its scores
    mean nothing, but they are real outputs of the scoring path."""
    import torch

    from train.model import Llama, get_config
    from train.reward import RewardModel

    torch.manual_seed(0)
    cfg = get_config({"dim": 32, "n_layers": 1, "n_heads": 2, "vocab_size": 32000, "multiple_of": 16,
                      "max_seq_len": 64})
    path = tmp_path_factory.mktemp("rm") / "rm"
    RewardModel(Llama(cfg), {"max_len": 64}).save(path, shared / "models" / "sentencepiece-32k-llama-style.model")
    return path


@pytest.fixture(scope="module")
def profiled(shared, vendor_config, reward_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(cli, ["vendors", "profile", str(vendor_config), "--out", str(out),
                                      "--reward-model", str(reward_model),
                                      "--lid-model", str(shared / "models" / "lid.176.ftz"),
                                      "--tokenizer", str(shared / "models" / "sentencepiece-32k-llama-style.model")])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "vendors.json").read_text())


def test_counts_add_up(profiled):
    out, profile = profiled
    expected_read = {"alpha": 101, ODD_VENDOR: 100 + 5, "gamma": 40 + 40}
    for name, read in expected_read.items():
        c = profile["vendors"][name]["counts"]
        assert c["read"] == read == c["kept"] + c["removed"] + c["rejected"]
    beta = profile["vendors"][ODD_VENDOR]
    assert beta["counts"]["rejected"] == 1 and beta["check_failures"]["bad_json"]["count"] == 1
    assert [f["read"] for f in beta["files"]] == [100, 5] and [f["format"] for f in beta["files"]] == ["openai", "alpaca"]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(j["vendor"], j["line"], j["check"]) for j in rejects] == [(ODD_VENDOR, 4, "bad_json")]
    assert profile["vendors"]["gamma"]["counts"]["kinds"] == {"preference": 40, "kto": 40}
    alpha = profile["vendors"]["alpha"]
    assert alpha["cost"] == 50.5 and alpha["cost_per_kept"] == round(50.5 / alpha["counts"]["kept"], 4)
    assert alpha["lengths"]["answer_tokens"]["n"] == 101 and alpha["languages"]["en"] > 0.9
    assert profile["skipped_checks"] == []


def _shingles(text, n=3):
    words = normalize_words(text).split()
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))} if words else set()


def _true_overlap(prompts, groups, names, threshold):
    """Brute force over all pairs: exact Jaccard of word 3-gram sets."""
    sets = [_shingles(p) for p in prompts]
    hit = np.zeros((len(names), len(names)))
    for i in range(len(sets)):
        found = {groups[j] for j in range(len(sets))
                 if j != i and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold}
        for g in found:
            hit[names.index(groups[i]), names.index(g)] += 1
    sizes = np.array([groups.count(n) for n in names])
    return hit / sizes[:, None]


def test_overlap_matrix_finds_the_planted_subset(vendor_config):
    datas = [read_vendor(v) for v in load_config(vendor_config)][:2]
    profile = profile_vendors(datas)
    names = profile["overlap"]["vendors"]
    matrix = np.array(profile["overlap"]["matrix"])
    prompts = [prompt_text(r) for d in datas for r in d.records]
    groups = [d.vendor.name for d in datas for r in d.records]
    assert np.allclose(matrix, _true_overlap(prompts, groups, names, 0.8), atol=1e-4)
    # the plant: 20 of alpha's 101 prompts are resold by beta (104 records read whole)
    assert matrix[0, 1] == round(20 / 101, 4) and matrix[1, 0] == round(20 / 104, 4)


def test_reward_scores_per_vendor(profiled, vendor_config, reward_model):
    from train.reward import RewardModel, score
    from train.tokenizer import Tokenizer

    _, profile = profiled
    scores = profile["scores"]["reward"]
    for name, v in profile["vendors"].items():
        c = v["counts"]
        assert scores["vendors"][name]["n"] + scores["vendors"][name]["unscored"] == c["read"] - c["rejected"]
    # the agreement figure, recomputed straight from train.reward on gamma's pairs
    gamma = [read_vendor(v) for v in load_config(vendor_config)][2].records
    pairs = [r for r in gamma if r.kind == "preference"]
    model, tokenizer = RewardModel.load(reward_model).eval(), Tokenizer.from_file(reward_model)
    chosen = np.array(score(model, tokenizer, [r.prompt for r in pairs], [r.chosen for r in pairs]))
    rejected = np.array(score(model, tokenizer, [r.prompt for r in pairs], [r.rejected for r in pairs]))
    assert scores["preference_agreement"] == {"gamma": round(float((chosen > rejected).mean()), 4)}
    assert scores["vendors"]["gamma"]["n"] == 80 and sum(scores["vendors"]["gamma"]["histogram"]) == 80


def test_html_is_escaped_and_self_contained(profiled):
    out, _ = profiled
    page = (out / "vendors.html").read_text()
    assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "beta &amp; &lt;i&gt;co&lt;/i&gt;" in page and "<i>co</i>" not in page

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.sections, self.links = [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "section":
                self.sections.append(attrs["id"])
            self.links += [v for k, v in attrs.items() if k in ("src", "href")]

    parser = Collect()
    parser.feed(page)
    assert parser.sections == SECTIONS
    assert len(parser.links) >= 3 and all(v.startswith("data:image/png;base64,") for v in parser.links)


def test_report_renders_in_headless_chromium(profiled, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium); .ci/run installs it")
    out, _ = profiled
    url = (out / "vendors.html").resolve().as_uri()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    dom = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,2000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1200, 2000)
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom
    assert "Prompt overlap between vendors" in dom and "Worst examples per check" in dom


def test_example_config(shared):
    """examples/vendors: 20 of bolt's chat prompts repeat acme's (SOURCES.md)."""
    datas = [read_vendor(v) for v in load_config(ROOT / "examples" / "vendors" / "vendors.yaml")]
    profile = profile_vendors(datas)
    reads = {n: v["counts"]["read"] for n, v in profile["vendors"].items()}
    assert reads == {"acme": 60, "bolt": 70, "cobalt": 50}
    # 19 of the 20 reach Jaccard 0.8 on word 3-grams; the 20th glued two words when the
    # vendor dropped the separator ("clarityThe idea"), true Jaccard 0.59
    assert profile["overlap"]["matrix"][0][1] == round(19 / 60, 4)
    assert profile["vendors"]["bolt"]["check_failures"]["placeholder"]["count"] >= 20


def test_config_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("vendors:\n  - name: x\n    files: [missing.json]\n")
    with pytest.raises(CurateError, match="file not found"):
        load_config(bad)
    bad.write_text("vendors:\n  - name: x\n    price_per_example: cheap\n    files: [a.json]\n")
    with pytest.raises(CurateError, match="price_per_example"):
        load_config(bad)
    result = CliRunner().invoke(cli, ["vendors", "profile", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 2


def test_odd_records_do_not_crash_the_profile(tmp_path):
    odd = [{"messages": []}, {"messages": [{"role": "system", "content": "Be nice."}]},
           {"messages": [{"role": "user", "content": "Hi"}]}, {"messages": [{"role": "assistant", "content": ""}]}]
    (tmp_path / "odd.jsonl").write_text("".join(json.dumps(o) + "\n" for o in odd) + "{broken\n")
    (tmp_path / "v.yaml").write_text("vendors:\n  - name: odd\n    files: [odd.jsonl]\n")
    datas = [read_vendor(v) for v in load_config(tmp_path / "v.yaml")]
    profile = profile_vendors(datas, scorers={"words": lambda prompts, answers: [len(a.split()) for a in answers]})
    v = profile["vendors"]["odd"]
    assert v["counts"] == {"read": 5, "kept": 0, "removed": 4, "rejected": 1, "kinds": {"sft": 4}, "annotators": 0}
    assert v["check_failures"]["role_order"]["count"] == 4 and v["check_failures"]["bad_json"]["count"] == 1
    assert profile["scores"]["words"]["vendors"]["odd"]["n"] == 4
    assert "<section id=\"worst\">" in render_html(profile)


def test_quality_classifier_scores_per_vendor(shared, vendor_config, tmp_path):
    """`--quality-model`: each vendor's answer P(hq) distribution, equal to scoring the answers directly."""
    from curate.scoring.models import load_fasttext
    from curate.scoring.quality import hq_probability, normalize, train_classifier

    wiki = [l for l in (shared / "data/pretrain/wiki_demo.txt").read_text().splitlines() if l.strip()]
    c4 = [json.loads(l)["text"] for l in (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()]
    model_path = tmp_path / "q.bin"
    train_classifier(wiki, c4[:60], model_path, bucket=20_000, epoch=5)
    res = CliRunner().invoke(cli, ["vendors", "profile", str(vendor_config), "--out", str(tmp_path / "out"),
                                   "--quality-model", str(model_path)])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "out/vendors.json").read_text())["scores"]["quality"]
    model = load_fasttext(model_path)
    for data in (read_vendor(v) for v in load_config(vendor_config)):
        taught = [r.chosen if r.kind == "preference" else (r.answers() or [""])[-1] for r in data.records]
        expected = hq_probability(model, [normalize(a) for a in taught])
        got = scores["vendors"][data.vendor.name]
        assert got["n"] == len(expected) and got["mean"] == round(float(expected.mean()), 4)
        assert 0.0 <= got["p10"] <= got["p90"] <= 1.0


def test_ifd_scores_per_vendor(shared, vendor_config, tmp_path):
    """`--ifd-model`: each vendor's IFD distribution, equal to scoring its taught answers (the last
    turn, given all before it) directly with train.ifd; the report shows the plot with its note."""
    import numpy as np
    import torch

    from train.ifd import ifd_scores
    from train.model import Llama, get_config
    from train.tokenizer import train_bpe

    alpaca = json.loads((shared / "data/sft/alpaca_en_demo.json").read_text())[:200]
    tok = train_bpe([r["instruction"] + " " + r["output"] for r in alpaca], 400, tmp_path / "tok.model", num_threads=1)
    torch.manual_seed(0)
    Llama(get_config({"dim": 32, "n_layers": 1, "n_heads": 2, "vocab_size": tok.vocab_size, "multiple_of": 16,
                      "max_seq_len": 1024})).save(tmp_path / "m")
    res = CliRunner().invoke(cli, ["vendors", "profile", str(vendor_config), "--out", str(tmp_path / "out"),
                                   "--ifd-model", str(tmp_path / "m"), "--tokenizer", str(tmp_path / "tok.model")])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "out/vendors.json").read_text())["scores"]["ifd"]
    model = Llama.load(tmp_path / "m")
    for data in (read_vendor(v) for v in load_config(vendor_config)):
        taught = [r.chosen if r.kind == "preference" else (r.answers() or [""])[-1] for r in data.records]
        convs = [{"messages": r.prompt_messages() + [{"role": "assistant", "content": a}]}
                 for r, a in zip(data.records, taught)]
        # the last turn of the full scoring, where the 1024-token cut leaves some of it
        n_answers = [sum(m["role"] == "assistant" for m in c["messages"]) for c in convs]
        expected = np.array([s.turns[-1]["ifd"] for s, n in zip(ifd_scores(model, tok, convs), n_answers)
                             if s is not None and len(s.turns) == n])
        got = scores["vendors"][data.vendor.name]
        assert got["n"] == len(expected) and got["mean"] == pytest.approx(float(expected.mean()), abs=1e-4)
        assert got["p50"] == pytest.approx(float(np.median(expected)), abs=1e-4)
    assert scores["vendors"]["alpha"]["n"] == 101
    assert "Instruction-following difficulty" in (tmp_path / "out/vendors.html").read_text()
    bad = CliRunner().invoke(cli, ["vendors", "profile", str(vendor_config), "--out", str(tmp_path / "o2"),
                                   "--ifd-model", str(tmp_path)])
    assert bad.exit_code != 0 and "not a model folder" in bad.output
