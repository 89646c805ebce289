"""Per-language settings of the text rules, and routing each document to its language's.

``languages.yaml`` (beside this file) holds, per ISO 639-1 code, the stop words and the
thresholds of each text rule (FineWeb-2's published per-language values; see the file's
header). A rule step built without a fixed ``language`` reads each document's
``meta.lang`` (written by the ``language`` step; English when absent) and runs a copy of
itself made with that language's settings. A language missing from the file gets the
``default`` entry, and the step counts it in stats as ``lang_fallback_<code>``.

The parameters of one language's copy, later ones winning: the step's defaults, the
file's values for the language, any parameter set on the step to a non-default value
(it applies to every language), then the step's ``languages: {code: {param: value}}``.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from pathlib import Path

import yaml

from curate.pipeline.step import Filter

SETTINGS_PATH = Path(__file__).with_name("languages.yaml")
FALLBACK = "default"
DEFAULT_LANGUAGE = "en"  # documents without meta.lang, as before the language step existed


@lru_cache(maxsize=1)
def language_settings() -> dict[str, dict]:
    """The parsed settings file: code -> {stop_words, <step name>: {param: value}}."""
    with open(SETTINGS_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def step_settings(step: str, lang: str) -> dict:
    """Parameters the settings file gives ``step`` for ``lang`` (or for the fallback)."""
    entry = language_settings().get(lang) or language_settings()[FALLBACK]
    params = dict(entry.get(step) or {})
    for key, value in params.items():  # paths in the settings file are relative to it
        if key.endswith("_path") and value:
            params[key] = str(SETTINGS_PATH.parent / value)
    if step == "gopher_quality" and "stop_words" in entry:
        params.setdefault("stop_words", entry["stop_words"])
    return params


def has_settings(lang: str) -> bool:
    return lang != FALLBACK and lang in language_settings()


class LanguageRouter:
    """Picks, for each document, the copy of a step made for the document's language."""

    def __init__(self, step, args: dict, language: str | None, languages: dict | None):
        defaults = {k: p.default for k, p in inspect.signature(type(step).__init__).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        self.explicit = {k: v for k, v in args.items()
                         if k in defaults and k not in ("language", "languages") and v != defaults[k]}
        self.step, self.fixed = step, language
        for lang, params in (languages or {}).items():
            if not isinstance(params, dict):
                raise ValueError(f"languages.{lang} must be a mapping of parameters, not {params!r}")
        self.overrides = {str(k): dict(v) for k, v in (languages or {}).items()}
        self.copies: dict[str, object] = {}
        for lang in self.overrides:  # build now, so a wrong parameter name fails at config time
            self.copy_for(lang)

    def copy_for(self, lang: str):
        """The step made with ``lang``'s settings (cached)."""
        copy = self.copies.get(lang)
        if copy is None:
            kwargs = {**step_settings(self.step.name, lang), **self.explicit, **self.overrides.get(lang, {})}
            try:
                copy = type(self.step)(**kwargs, language=lang)
            except TypeError as e:
                raise ValueError(f"step {self.step.name!r}, language {lang!r}: {e}") from None
            copy.router = None
            copy.counters = self.step.counters  # one set of counters in stats.json
            self.copies[lang] = copy
        return copy

    def pick(self, doc):
        """The copy for ``doc``'s language; counts documents that fall back (their words
        are still split by the rules for their language, or spaCy's neutral rules)."""
        lang = self.fixed or doc.meta.get("lang") or DEFAULT_LANGUAGE
        if not has_settings(lang):
            self.step.counters[f"lang_fallback_{lang}"] += 1
        return self.copy_for(lang)


class LanguageFilter(Filter):
    """A filter with settings per language. Its ``__init__`` sets ``self.router`` (a
    :class:`LanguageRouter`); ``reason`` hands each document to the copy made for the document's
    language, whose ``reason_in_language`` decides."""

    router: LanguageRouter | None = None

    def reason(self, doc):
        step = self.router.pick(doc) if self.router is not None else self
        return step.reason_in_language(doc)

    def reason_in_language(self, doc) -> str | None:
        raise NotImplementedError
