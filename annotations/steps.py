"""Cleaning steps for annotation records in ``curate run`` configs.

``annotation_checks`` runs the checks of :mod:`annotations.checks` as a filter.
Deduplication and decontamination reuse curate's own steps: an annotation Document
carries its last user turn in ``meta["prompt_text"]`` and a flat rendering of every
turn in ``text``, so::

    steps:
      - step: annotation_checks
        lid_model: models/lid.176.ftz
      - step: exact_dedup            # the same prompt, within and across vendors
        text_key: prompt_text
      - step: minhash_dedup          # near-duplicate prompts
        text_key: prompt_text
        ngram: 3                     # prompts are short: word 3-grams
      - step: decontaminate          # eval-set text anywhere in prompt or answers
        eval_files: [evals/mmlu.jsonl]

Documents that are not annotation records (no ``meta["kind"]``) pass through
``annotation_checks`` untouched and are counted in ``counters["not_annotation"]``.
"""
from __future__ import annotations

from pathlib import Path

from annotations.checks import CHECKS, Checker
from annotations.records import KINDS, from_document
from curate.pipeline.step import Step, register
from curate.record import Document, Removed

SEVERITIES = ("error", "warning")


def _is_record(doc: Document) -> bool:
    return doc.meta.get("kind") in KINDS


@register("annotation_checks")
class AnnotationChecks(Step):
    """Run the named checks (default: all record checks). A record failing a check whose
    severity is in ``remove`` (default ``["error"]``) is removed, with every failure in
    the reason; other failures are kept in ``meta["flags"]`` as ``{check: detail}``.
    ``lid_model`` is the fastText lid.176 path for ``language_mismatch``;
    ``max_turn_chars`` (default 16,000) bounds ``too_long``."""

    def __init__(self, checks: list[str] | None = None, remove: list[str] = ("error",),
                 lid_model: str | None = None, max_turn_chars: int = 16_000):
        super().__init__()
        bad = [s for s in remove if s not in SEVERITIES]
        if bad:
            raise ValueError(f"remove: unknown severities {bad}; use {SEVERITIES}")
        if lid_model is not None and not Path(lid_model).is_file():
            raise ValueError(f"lid_model: file not found: {lid_model}")
        self.checker_args = dict(names=checks, lid_model=lid_model, max_turn_chars=max_turn_chars)
        self.remove = set(remove)
        self.checker: Checker | None = None
        Checker(**{**self.checker_args, "lid_model": None})  # validates check names now, loads nothing

    def setup(self) -> None:
        self.checker = Checker(**self.checker_args)

    def process(self, docs):
        if self.checker is None:
            self.setup()
        kept, removed = [], []
        for doc in docs:
            if not _is_record(doc):
                self.counters["not_annotation"] += 1
                kept.append(doc)
                continue
            failures = self.checker.run(from_document(doc))
            self.counters.update(f"failed_{name}" for name in failures)
            if any(CHECKS[name].severity in self.remove for name in failures):
                reason = "; ".join(f"{name}: {detail}" for name, detail in failures.items())
                removed.append(Removed(doc, self.name, reason, {"checks": sorted(failures)}))
            else:
                if failures:
                    doc.meta["flags"] = failures
                kept.append(doc)
        return kept, removed
