"""annotations.formats / records: real files in, canonical records out, nothing lost."""
import json

import pytest

from annotations.formats import FORMATS, detect_format, read_file
from annotations.records import KTOExample, PreferencePair, SFTConversation, from_document, to_document
from curate.record import from_table, to_table


def _raw_elements(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def _text(content):  # the v1 format's typed parts, read independently of the reader
    return content if isinstance(content, str) else "\n".join(p["value"] for p in content)


# What each real element must become, written from the SOURCES.md description of the file.
def _expect_alpaca(raw, rec):
    prompt = raw["instruction"] + ("\n\n" + raw["input"] if raw["input"] else "")
    assert rec.messages == [{"role": "user", "content": prompt}, {"role": "assistant", "content": raw["output"]}]


def _expect_v1(raw, rec):
    assert rec.messages == [{"role": m["role"], "content": _text(m["content"])} for m in raw["messages"]]


def _expect_dpo(raw, rec):
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    assert rec.prompt == [{"role": roles[t["from"]], "content": t["value"]} for t in raw["conversations"]]
    assert (rec.chosen, rec.rejected) == (raw["chosen"]["value"], raw["rejected"]["value"])
    assert rec.rating is None and rec.margin is None


def _expect_kto(raw, rec):
    assert rec.messages == raw["messages"] and rec.label is raw["label"]


SHARED_FILES = [
    ("alpaca_en_demo.json", "alpaca", SFTConversation, 999, _expect_alpaca),
    ("identity.json", "alpaca", SFTConversation, 91, _expect_alpaca),
    ("v1_sft_demo.jsonl", "openai", SFTConversation, 500, _expect_v1),
    ("dpo_en_demo.json", "preference", PreferencePair, 300, _expect_dpo),
    ("kto_en_demo.json", "kto", KTOExample, 300, _expect_kto),
]


@pytest.mark.parametrize("name,fmt,cls,count,expect", SHARED_FILES, ids=[f[0] for f in SHARED_FILES])
def test_shared_file_becomes_canonical_records(shared, name, fmt, cls, count, expect):
    path = shared / "data" / "sft" / name
    raws = _raw_elements(path)
    assert len(raws) == count  # the count SOURCES.md states
    assert detect_format(raws[0]) == fmt
    records, rejects = read_file(path, vendor="v", annotator="a1")
    assert rejects == [] and len(records) == count
    for k, (raw, rec) in enumerate(zip(raws, records)):
        assert type(rec) is cls and rec.vendor == "v" and rec.annotator == "a1" and rec.source == str(path)
        assert rec.line == (k + 1 if path.suffix == ".jsonl" else k)
        assert rec.original == raw  # every field the vendor sent, loss_weight included
        expect(raw, rec)
    # lossless through Document and through the pipeline's Arrow table
    docs = [to_document(r) for r in records]
    assert [from_document(d) for d in from_table(to_table(docs))] == records
    assert docs[0].meta["kind"] == cls.kind


def test_kto_labels_and_v1_loss_weights_survive(shared):
    kto, _ = read_file(shared / "data" / "sft" / "kto_en_demo.json")
    assert sum(r.label for r in kto) == 150  # 150 desirable, 150 not (SOURCES.md)
    v1, _ = read_file(shared / "data" / "sft" / "v1_sft_demo.jsonl")
    assert {m["loss_weight"] for r in v1 for m in r.original["messages"]} == {0.0, 1.0}


def _write(tmp_path, name, elements):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(e) + "\n" for e in elements))
    else:
        path.write_text(json.dumps(elements))
    return path


def test_other_shapes_are_detected_and_read(tmp_path):
    cases = [
        ({"prompt": "Name a colour.", "response": "Blue."}, "prompt_response",
         [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]),
        ({"system": "Be brief.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]},
         "sharegpt", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}]),
    ]
    for element, fmt, messages in cases:
        assert detect_format(element) == fmt
        (rec,), rejects = read_file(_write(tmp_path, f"{fmt}.jsonl", [element]))
        assert rejects == [] and rec.messages == messages

    pair = {"prompt": "2+2?", "chosen": "4.", "rejected": "5.", "rating": "significantly better", "annotator": "ann7"}
    margin = {"prompt": [{"role": "user", "content": "2+2?"}], "margin": 2,
              "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4."}],
              "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5."}]}
    (p1, p2), rejects = read_file(_write(tmp_path, "pref.jsonl", [pair, margin]))
    assert rejects == []
    assert (p1.prompt, p1.chosen, p1.rejected, p1.rating, p1.annotator) == (
        [{"role": "user", "content": "2+2?"}], "4.", "5.", "significantly better", "ann7")
    assert (p2.chosen, p2.rejected, p2.margin, p2.rating) == ("4.", "5.", 2.0, None)

    (k,), _ = read_file(_write(tmp_path, "kto.jsonl", [{"prompt": "Hi", "completion": "Hello.", "label": False}]))
    assert isinstance(k, KTOExample) and k.label is False and k.messages[-1] == {"role": "assistant", "content": "Hello."}


def test_format_override(tmp_path):
    # {"prompt", "completion", "label"} detects as KTO; forced to prompt_response it is plain SFT.
    path = _write(tmp_path, "x.jsonl", [{"prompt": "Hi", "completion": "Hello.", "label": True}])
    assert isinstance(read_file(path)[0][0], KTOExample)
    (rec,), _ = read_file(path, fmt="prompt_response")
    assert isinstance(rec, SFTConversation) and rec.original["label"] is True
    with pytest.raises(ValueError, match="unknown format"):
        read_file(path, fmt="nope")
    assert set(FORMATS) == {"alpaca", "sharegpt", "openai", "prompt_response", "preference", "kto"}


def test_truncated_array_keeps_what_came_before(shared, tmp_path):
    elements = json.loads((shared / "data" / "sft" / "alpaca_en_demo.json").read_text())[:6]
    text = json.dumps(elements, indent=2)
    cut = text.index(elements[4]["output"][:30])  # break inside element 4
    path = tmp_path / "cut.json"
    path.write_text(text[:cut])
    records, rejects = read_file(path, vendor="v")
    assert [r.line for r in records] == [0, 1, 2, 3]
    assert [r.original for r in records] == elements[:4]
    assert len(rejects) == 1
    bad = rejects[0]
    assert (bad.check, bad.line, bad.vendor, bad.source) == ("bad_json", 4, "v", str(path))
    assert bad.raw.lstrip().startswith("{") and '"instruction"' in bad.raw
    assert len(records) + len(rejects) == 5  # read: 4 whole elements and the broken rest


def test_wrong_types_and_missing_fields_are_rejected_with_reasons(tmp_path):
    good = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    elements = [
        good,
        {"instruction": "Say hi.", "input": "", "output": 42},  # wrong type
        {"instruction": "Say hi.", "input": ""},  # missing output
        {"instruction": None, "input": "", "output": "Hi."},  # null counts as missing
        ["not", "an", "object"],
        {"instruction": "Say hi.", "input": "", "output": "Hi.", "history": [["q"]]},
    ]
    records, rejects = read_file(_write(tmp_path, "a.json", elements))
    assert [r.line for r in records] == [0]
    assert [(j.line, j.check) for j in rejects] == [
        (1, "wrong_types"), (2, "missing_fields"), (3, "missing_fields"), (4, "wrong_types"), (5, "wrong_types")]
    assert "'output' is int" in rejects[0].reason and "no 'output'" in rejects[1].reason
    assert len(records) + len(rejects) == len(elements)


def test_jsonl_bad_lines_and_bad_turns(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}),
        '{"messages": [{"role": "user", "content": "Hi"}',  # cut line
        "",  # blank lines are not elements
        json.dumps({"messages": [{"role": "robot", "content": "Hi"}]}),
        json.dumps({"messages": [{"role": "user", "content": 7}]}),
        json.dumps({"messages": [{"role": "user"}]}),
        json.dumps({"weird": 1}),
    ]
    path.write_text("\n".join(lines) + "\n")
    records, rejects = read_file(path)
    assert [r.line for r in records] == [1]
    assert [(j.line, j.check) for j in rejects] == [
        (2, "bad_json"), (4, "wrong_types"), (5, "wrong_types"), (6, "missing_fields"), (7, "missing_fields")]
    assert rejects[0].raw == lines[1]
    assert len(records) + len(rejects) == 6
    # the file's format is fixed by its first object: {"weird": 1} lacks 'messages'

    kto = [{"label": True, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}]},
           {"label": "yes", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}]}]
    records, rejects = read_file(_write(tmp_path, "kto.json", kto))
    assert [r.line for r in records] == [0] and [(j.line, j.check) for j in rejects] == [(1, "wrong_types")]
    assert "'label' is str" in rejects[0].reason

    records, rejects = read_file(_write(tmp_path, "odd.jsonl", [{"weird": 1}]))
    assert records == [] and [(j.line, j.check) for j in rejects] == [(1, "unknown_format")]


def test_json_file_holding_one_object_or_json_lines(tmp_path):
    element = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    one = tmp_path / "one.json"
    one.write_text(json.dumps(element, indent=2))
    (rec,), rejects = read_file(one)
    assert rec.line == 0 and rec.original == element and rejects == []
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps(element) + "\n" + json.dumps(element) + "\n")
    records, rejects = read_file(lines)
    assert [r.line for r in records] == [1, 2] and rejects == []
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert read_file(empty) == ([], [])
