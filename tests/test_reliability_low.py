"""Issue 17, low: bad input that printed a traceback or passed silently now gives one line
or a reject. Each test builds its own small files."""
import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from reliability_helpers import ROOT, balanced, kept, real_texts, rejects, run

from curate.basics.errors import CurateError
from curate.pipeline.config import load_config
from curate.steps import build_step


def write_jsonl(path, texts, prefix="g"):
    path.write_text("".join(json.dumps({"id": f"{prefix}{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def test_output_folder_that_is_a_file(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", real_texts(2))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CurateError, match="is a file"):
        run([str(src)], tmp_path / "afile")


@pytest.mark.parametrize("entry,match", [({"shard_bytes": "big"}, "shard_bytes"), ({"text_field": ["a"]}, "text_field"),
                                         ({"path": 3}, "input path"), ({"max_record_bytes": 0}, "max_record_bytes"),
                                         ({"namespaces": "0"}, "namespaces"), ({"encoding_errors": "ignore"}, "encoding_errors")])
def test_bad_input_spec_types(tmp_path, entry, match):
    with pytest.raises(CurateError, match=match):
        load_config({"inputs": [{"path": str(tmp_path / "in.jsonl"), **entry}], "output": {"dir": str(tmp_path / "o")}})


def test_bad_word_list_and_fasttext_model(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", real_texts(3))
    (tmp_path / "words.bin").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    (tmp_path / "model.bin").write_bytes(b"not a fasttext model" * 10)
    with pytest.raises(CurateError, match="not UTF-8"):
        run([str(src)], tmp_path / "o1", steps=[{"step": "c4_badwords", "words_path": str(tmp_path / "words.bin")}])
    with pytest.raises(CurateError, match="has no words"):
        run([str(src)], tmp_path / "o2", steps=[{"step": "c4_badwords", "words_path": str(tmp_path / "empty.txt")}])
    pytest.importorskip("fasttext")
    with pytest.raises(CurateError, match="cannot load fastText model"):
        run([str(src)], tmp_path / "o3", steps=[{"step": "language", "model_path": str(tmp_path / "model.bin")}])


class Payload:  # a pickle of this would run code on load if anything unpickled it
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_against_index_and_checkpoint_are_refused_in_one_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", real_texts(6))
    steps = [{"step": "minhash_dedup", "index_dir": str(tmp_path / "idx")}]
    balanced(run([str(src)], tmp_path / "o1", steps=steps))
    np.save(tmp_path / "idx" / "00000.sig.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(CurateError, match="against: cannot use the index"):
        run([str(src)], tmp_path / "o2", steps=[{"step": "minhash_dedup", "against": str(tmp_path / "idx")}])
    torch = pytest.importorskip("torch")
    from train.hf import load_hf

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
                                                  "intermediate_size": 16, "vocab_size": 32}))
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        torch.save({"w": Payload()}, f)
    with pytest.raises(CurateError, match="refused to load"):
        load_hf(ckpt)


def test_deeply_nested_keep_if_is_one_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", real_texts(2))
    with pytest.raises(CurateError, match="nested"):
        load_config({"inputs": [str(src)], "steps": [{"step": "keep_if", "expr": "not " * 995 + "x"}],
                     "output": {"dir": str(tmp_path / "o")}})


def test_plot_labels_do_not_interpret_dollars():
    import annotations.report  # noqa: F401  (sets the plotting defaults)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar([r"$\frac$", "plain"], [1, 2])
    ax.set_title(r"vendor $\frac$")
    fig.savefig(io.BytesIO(), format="png")  # mathtext would raise on '\frac' with no arguments
    plt.close(fig)


def test_vendor_dir_names_stay_inside():
    from experiments.harness import safe_name

    for name in ("..", ".", "...", "a/../b", "", r"$\frac$"):
        assert safe_name(name) not in ("", ".", "..") and "/" not in safe_name(name)
    assert safe_name("acme") == "acme"


def test_encoding_errors_is_honoured(tmp_path):
    good = real_texts(3)
    body = "".join(json.dumps({"id": f"g{i}", "text": t}) + "\n" for i, t in enumerate(good)).encode()
    body += b'{"id": "latin1", "text": "caf\xe9 au lait"}\n'
    (tmp_path / "in.jsonl").write_bytes(body)
    stats = run([str(tmp_path / "in.jsonl")], tmp_path / "strict")
    balanced(stats)
    assert stats["rejected"] == 1 and "invalid UTF-8" in rejects(tmp_path / "strict")[0]["reason"]
    stats = run([{"path": str(tmp_path / "in.jsonl"), "encoding_errors": "replace"}], tmp_path / "replace")
    balanced(stats)
    assert stats["rejected"] == 0 and kept(tmp_path / "replace")["latin1"] == "caf\ufffd au lait"


def test_unterminated_csv_quote_is_a_reject_and_later_rows_are_kept(tmp_path):
    texts = ["first row text", "second row text", "third row text", "fourth\nspans two lines"]
    rows = ["id,text", f'g0,"{texts[0]}"', 'bad,"this quote is never closed', f"g1,{texts[1]}",
            f'g2,"{texts[2]}"', f'g3,"{texts[3]}"', "g4,last row"]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n")
    stats = run([str(tmp_path / "in.csv")], tmp_path / "out")
    balanced(stats)
    got = kept(tmp_path / "out")
    assert got == {"g0": texts[0], "g1": texts[1], "g2": texts[2], "g3": texts[3], "g4": "last row"}
    assert [(r["line"], r["reason"]) for r in rejects(tmp_path / "out")] == [(3, "malformed CSV: ',' expected after '\"'")]
    (tmp_path / "end.csv").write_text("id,text\ng0,fine\nbad,\"open to the end\ng1,kept\n")
    stats = run([str(tmp_path / "end.csv")], tmp_path / "out2")
    balanced(stats)
    assert set(kept(tmp_path / "out2")) == {"g0", "g1"}
    assert rejects(tmp_path / "out2")[0]["reason"] == "malformed CSV: unterminated quote"


def test_duplicate_ids_across_files_are_counted_and_kept_source_recorded(tmp_path):
    import pyarrow.parquet as pq

    texts = real_texts(4)
    write_jsonl(tmp_path / "a.jsonl", texts[:2])
    write_jsonl(tmp_path / "b.jsonl", [texts[0], texts[2]])  # g0 again, and the same text as a.jsonl's g0
    stats = run([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], tmp_path / "out", steps=[{"step": "exact_dedup"}])
    balanced(stats)
    assert stats["steps"][0]["global"]["duplicate_ids"] == 4  # g0 and g1 each occur in both files
    removed = pq.read_table(tmp_path / "out" / "removed").to_pylist()
    assert [(r["source"], json.loads(r["extra"])["kept_source"]) for r in removed] == [("b.jsonl", "a.jsonl")]


def test_failed_run_does_not_stamp_the_output(tmp_path):
    with pytest.raises(CurateError, match="input not found"):
        run([str(tmp_path / "missing.jsonl")], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    write_jsonl(tmp_path / "missing.jsonl", real_texts(2))
    balanced(run([str(tmp_path / "missing.jsonl")], tmp_path / "out"))  # no --overwrite needed


def test_messages_pii_kinds_and_batch_size(tmp_path):
    assert build_step({"step": "pii", "kinds": "email"}).kinds == ["email"]
    with pytest.raises(ValueError, match=r"\['emial'\]"):
        build_step({"step": "pii", "kinds": "emial"})
    with pytest.raises(CurateError, match="batch_size must be an integer, got True"):
        load_config({"inputs": ["x"], "output": {"dir": str(tmp_path / "o")}, "batch_size": True})


def test_cli_errors_are_one_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", real_texts(3))
    exe = [sys.executable, "-c", "from curate.cli import main; main()"]
    cases = [["filter", str(src), "--out", str(tmp_path / "o1"), "--rules", "fineweb_quality",
              "--param", "fineweb_quality.line_punct_thr=.nan"],
             ["filter", str(src), "--out", str(tmp_path / "o2"), "--rules", "keep_if", "--param", "keep_if.expr=" + "not " * 995 + "x"]]
    for args in cases:
        p = subprocess.run(exe + args, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


@pytest.mark.slow
def test_ctrl_c_ends_a_multi_worker_run_with_one_line_and_it_resumes(tmp_path):
    import os
    import signal
    import time

    texts = real_texts(300)
    with open(tmp_path / "in.jsonl", "w") as f:
        for c in range(30):
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": f"d{c}-{i}", "text": t}) + "\n")
    config = {"inputs": [{"path": str(tmp_path / "in.jsonl"), "shard_bytes": 1_000_000}],
              "steps": [{"step": "gopher_quality"}, {"step": "gopher_repetition"}], "output": {"dir": str(tmp_path / "out")}}
    (tmp_path / "run.yaml").write_text(json.dumps(config))
    cmd = [sys.executable, "-c", "from curate.cli import main; main()", "run", str(tmp_path / "run.yaml"), "--workers", "2", "--quiet"]
    markers = tmp_path / "out" / "_work" / "markers"
    for when in ("starting", "busy"):  # while workers start (import), then once they work
        done_before = len(list(markers.glob("*.json"))) if markers.is_dir() else 0
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        for _ in range(600):  # the stamp is written just before the workers start; markers as they finish
            if (tmp_path / "out" / "_work" / "config.json").exists() if when == "starting" else \
                    len(list(markers.glob("*.json"))) > done_before:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
        err = p.communicate(timeout=120)[1]
        assert p.returncode == 130 and err.strip().splitlines() == ["curate: aborted"], (when, err)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    balanced(stats)
    assert stats["read"] == 9000


@pytest.mark.slow
def test_killed_worker_is_one_line_and_the_rerun_resumes(tmp_path):
    import os
    import signal
    import time

    with open(tmp_path / "in.jsonl", "w") as f:
        for c in range(30):
            for i, t in enumerate(real_texts(300)):
                f.write(json.dumps({"id": f"d{c}-{i}", "text": t}) + "\n")
    config = {"inputs": [{"path": str(tmp_path / "in.jsonl"), "shard_bytes": 1_000_000}],
              "steps": [{"step": "gopher_repetition"}], "output": {"dir": str(tmp_path / "out")}}
    (tmp_path / "run.yaml").write_text(json.dumps(config))
    cmd = [sys.executable, "-c", "from curate.cli import main; main()", "run", str(tmp_path / "run.yaml"), "--workers", "2", "--quiet"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    markers = tmp_path / "out" / "_work" / "markers"
    workers = []
    for _ in range(600):  # once a shard is done, kill -9 one of the worker processes
        time.sleep(0.1)
        if markers.is_dir() and any(markers.iterdir()):
            workers = _worker_pids(p.pid)
            if workers:
                break
    assert workers, "no worker found"
    os.kill(workers[0], signal.SIGKILL)
    err = p.communicate(timeout=300)[1]
    assert p.returncode == 2 and err.strip().splitlines() == [
        "curate: error: a worker process died (killed, out of memory or interrupted); rerun the same command to resume"], err
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    balanced(stats)
    assert stats["read"] == 9000


def _worker_pids(parent: int) -> list[int]:
    """Process ids of the multiprocessing workers (not the resource tracker) of ``parent``."""
    from pathlib import Path

    pids = []
    for d in Path("/proc").iterdir():
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(d.name))
    return pids
