"""annotations.checks and annotations.steps: each check fires on a planted bad example
and stays silent on its clean twin; the steps remove, flag and deduplicate."""
import json

import pytest

from annotations.checks import CHECKS, RECORD_CHECKS, Checker
from annotations.formats import read_file
from annotations import overlap
from annotations.overlap import normalize
from annotations.records import KTOExample, PreferencePair, SFTConversation, to_document
from curate.dedup.normalize import normalize_words
from experiments.steps import build_step
from curate.record import Document

LONG = ("The committee reviewed every proposal carefully and decided that the second design "
        "offered the best balance of cost, safety and comfort for the families who will live there")


def sft(user, answer, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return SFTConversation(messages=messages, vendor="v", source="f.jsonl", line=1)


def pair(chosen, rejected, prompt="Which design won?"):
    return PreferencePair(prompt=[{"role": "user", "content": prompt}], chosen=chosen, rejected=rejected)


# check name -> (bad record, clean twin); the twin differs only in what the check looks for
TWINS = {
    "empty_answer": (sft("Say hello.", "  \n"), sft("Say hello.", "Hello.")),
    "role_order": (
        SFTConversation(messages=[{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi."}]),
        SFTConversation(messages=[{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}])),
    "truncated": (sft("Which design won?", LONG + " and the"), sft("Which design won?", LONG + ".")),
    "copies_prompt": (sft(f"Summarise: {LONG}.", f"Summarise: {LONG}."),
                      sft(f"Summarise: {LONG}.", "The second design won on cost, safety and comfort.")),
    "placeholder": (sft("Who are you?", "I am {{name}}, made by {{author}}."),
                    sft("Who are you?", "I am Ada, made by the lab.")),
    "mojibake": (sft("Spell café.", "It is spelled cafÃ© with an accent."),
                 sft("Spell café.", "It is spelled café with an accent.")),
    "control_chars": (sft("Ring the bell.", "Ding\x07 dong."), sft("Ring the bell.", "Ding dong.")),
    "too_long": (sft("Write a lot.", "Word. " * 3000), sft("Write a lot.", "Word. " * 2000)),
    "refusal": (sft("Tell me a joke.", "As an AI language model, I cannot tell jokes."),
                sft("Tell me a joke.", "Why did the AI cross the road? To optimise the other side.")),
    "chosen_equals_rejected": (pair("The second one.", " The second  one."), pair("The second one.", "The first one.")),
}


def test_every_check_has_a_test():
    tested = set(TWINS) | {"language_mismatch"}  # language ID needs the shared model: test below
    parse = {"bad_json", "wrong_types", "missing_fields", "unknown_format"}  # test_annotations_formats
    assert tested | parse == set(CHECKS)
    assert {c.severity for c in CHECKS.values()} == {"error", "warning"}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_check_fires_on_bad_and_not_on_clean_twin(name):
    checker = Checker(max_turn_chars=16_000)
    bad, clean = TWINS[name]
    assert set(checker.run(bad)) == {name}
    assert checker.run(clean) == {}


def test_refusal_only_counts_in_taught_answers():
    checker = Checker(names=["refusal"])
    no = "I cannot help with that."
    assert checker.run(pair(no, "Sure, here it is.")) != {}
    assert checker.run(pair("Sure, here it is.", no)) == {}  # refusing is what the pair teaches against
    kto = lambda label: KTOExample(messages=sft("Hi", no).messages, label=label)  # noqa: E731
    assert checker.run(kto(True)) != {} and checker.run(kto(False)) == {}


def test_preference_prompt_must_end_with_user():
    checker = Checker(names=["role_order"])
    bad = PreferencePair(prompt=sft("Hi", "Hello.").messages, chosen="a.", rejected="b.")
    assert "expected user" in checker.run(bad)["role_order"]
    assert checker.run(pair("a.", "b.")) == {}


def test_language_mismatch(shared):
    checker = Checker(lid_model=shared / "models" / "lid.176.ftz")
    prompt = "Please explain in a few sentences why the sky looks blue during the day."
    english = "Sunlight is scattered by the molecules of the air, and blue light is scattered the most."
    german = "Das Sonnenlicht wird von den Molekülen der Luft gestreut, und blaues Licht wird am stärksten gestreut."
    assert set(checker.run(sft(prompt, german))) == {"language_mismatch"}
    assert checker.run(sft(prompt, english)) == {}
    assert Checker().skipped == ["language_mismatch"]  # no model: reported as not run, never a silent pass


def test_unknown_check_name_is_an_error():
    with pytest.raises(ValueError, match="unknown checks"):
        Checker(names=["nope"])
    with pytest.raises(ValueError, match="unknown checks"):
        Checker(names=["bad_json"])  # a parse check is not run on records
    assert len(RECORD_CHECKS) == 11


def test_annotation_checks_step_removes_errors_and_flags_warnings():
    step = build_step({"step": "annotation_checks"})
    error_bad, _ = TWINS["placeholder"]
    warn_bad, _ = TWINS["truncated"]
    _, clean = TWINS["placeholder"]
    plain = Document(id="p", text="not an annotation")
    docs = [to_document(r) for r in (error_bad, warn_bad, clean)] + [plain]
    kept, removed = step.process(docs)
    assert [r.doc.id for r in removed] == [docs[0].id]
    assert removed[0].reason.startswith("placeholder: answer 1 has '{{name}}'")
    assert [d.id for d in kept] == [docs[1].id, docs[2].id, "p"]
    assert set(kept[0].meta["flags"]) == {"truncated"} and "flags" not in kept[1].meta
    assert step.counters["not_annotation"] == 1
    strict = build_step({"step": "annotation_checks", "remove": ["error", "warning"], "checks": ["truncated"]})
    assert [r.doc.id for r in strict.process(docs)[1]] == [docs[1].id]
    with pytest.raises(ValueError):
        build_step({"step": "annotation_checks", "remove": ["fatal"]})


def word_shingles(text, n=3):
    """The shingles curate.dedup hashes: word n-grams of normalize_words text (all words if fewer)."""
    words = normalize_words(text).split()
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))} if words else set()


def _true_clusters(prompts, threshold):
    """Brute force: exact Jaccard of shingle sets over all pairs, union-find, first kept."""
    sets = [word_shingles(p) for p in prompts]
    parent = list(range(len(prompts)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold:
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(prompts))]


def _run_global(step, shards, work):
    for s, shard in enumerate(shards):
        step.index(shard, s, work)
    stats = step.reduce(work, len(shards))
    results = [step.apply(shard, s, work) for s, shard in enumerate(shards)]
    return stats, [d for kept, _ in results for d in kept], [r for _, removed in results for r in removed]


def test_prompt_dedup_with_curate_steps_across_shards_and_vendors(shared, tmp_path):
    alpaca, _ = read_file(shared / "data" / "sft" / "alpaca_en_demo.json", vendor="a")
    vendor_a, vendor_b = alpaca[:60], alpaca[60:120]
    planted = []
    for k, rec in enumerate(alpaca[:12]):  # b resells 12 of a's prompts: 6 verbatim, 6 re-cased and re-spaced
        text = rec.messages[0]["content"]
        planted.append(SFTConversation(messages=[{"role": "user", "content": text if k % 2 else "  " + text.upper() + " "},
                                                 {"role": "assistant", "content": "Another answer."}],
                                       vendor="b", source="b.jsonl", line=k + 1))
    long_prompts = [r for r in alpaca[40:60] if len(r.messages[0]["content"].split()) >= 15][:4]
    for k, rec in enumerate(long_prompts):  # and 4 near copies: a word added
        planted.append(SFTConversation(messages=[{"role": "user", "content": rec.messages[0]["content"] + " Thanks"},
                                                 {"role": "assistant", "content": "Sure."}],
                                       vendor="b", source="b.jsonl", line=20 + k))
    docs = [to_document(r) for r in vendor_a + vendor_b + planted]
    shards = [docs[:70], docs[70:]]

    exact = build_step({"step": "exact_dedup", "text_key": "prompt_text"})
    _, kept, removed = _run_global(exact, shards, tmp_path / "exact")
    assert {r.doc.id for r in removed} >= {to_document(p).id for p in planted[:12]}
    norm = [normalize(d.meta["prompt_text"]) for d in docs]
    assert len(kept) == len(set(norm)) and len(kept) + len(removed) == len(docs)

    near = build_step({"step": "minhash_dedup", "text_key": "prompt_text", "ngram": 3, "threshold": 0.8})
    _, kept, removed = _run_global(near, [docs[:70], docs[70:]], tmp_path / "near")
    truth = _true_clusters([d.meta["prompt_text"] for d in docs], 0.8)
    expected = {docs[i].id for i, c in enumerate(truth) if c != i}
    assert {d.id for d in docs[-16:]} <= expected  # the plant is in the truth
    assert {r.doc.id for r in removed} == expected
    assert len(kept) + len(removed) == len(docs)
    # the overlap module's clusters (same MinHash, LSH folded over equal signatures) agree
    clusters = overlap.clusters(overlap.signatures([d.meta["prompt_text"] for d in docs]), 0.8)
    assert {docs[i].id for i, c in enumerate(clusters) if c != i} == expected


def test_curate_decontaminate_step_on_annotation_records(shared, tmp_path):
    alpaca, _ = read_file(shared / "data" / "sft" / "alpaca_en_demo.json", vendor="a")
    records = alpaca[:40]
    leaked = records[3].messages[1]["content"].split()[5:25]  # 20 words of an answer
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"id": "q1", "question": "intro words " + " ".join(leaked) + " outro"}) + "\n")
    step = build_step({"step": "decontaminate", "eval_files": [str(eval_file)], "ngram": 13})
    _, kept, removed = _run_global(step, [[to_document(r) for r in records]], tmp_path / "work")
    assert [r.doc.meta["line"] for r in removed] == [3] and len(kept) == 39
