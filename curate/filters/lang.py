"""Language identification with fastText's ``lid.176`` model (Joulin et al. 2016)."""
from __future__ import annotations

import numpy as np

from curate.pipeline.params import number
from curate.pipeline.step import Step, register
from curate.record import Removed
from curate.scoring.models import load_fasttext, resolve


@register("language")
class Language(Step):
    """Write ``meta["lang"]`` (ISO 639 code) and ``meta["lang_score"]`` (probability of
    that language, 0-1) and keep documents whose top language is in ``languages`` (all
    when None) with a score of at least ``min_score``. ``model_path`` defaults to the
    cached ``lid.176.ftz`` (``curate models fetch lid``). Newlines are read as spaces."""

    def __init__(self, languages: list[str] | str | None = None, min_score: float = 0.65,
                 model_path: str | None = None, text_key: str = "text"):
        super().__init__()
        if isinstance(languages, str):
            languages = [x.strip() for x in languages.split(",") if x.strip()]
        self.languages = frozenset(languages) if languages else None
        number("language.min_score", min_score, 0, 1)
        self.min_score = min_score
        self.model_path = model_path
        self.text_key = text_key
        self.model = None

    def setup(self):
        self.model = load_fasttext(resolve("lid", self.model_path))

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """Top language code and its probability for each text."""
        if self.model is None:
            self.setup()
        labels, probs = self.model.predict([t.replace("\n", " ") for t in texts], k=1)
        langs = [lab[0].removeprefix("__label__") if lab else "unknown" for lab in labels]
        return langs, np.array([p[0] if len(p) else 0.0 for p in probs], dtype=np.float64)

    def process(self, docs):
        langs, scores = self.predict([str(d.get(self.text_key) or "") for d in docs])
        kept, removed = [], []
        for doc, lang, score in zip(docs, langs, scores):
            score = round(min(float(score), 1.0), 4)
            doc.meta["lang"], doc.meta["lang_score"] = lang, score
            if self.languages is not None and lang not in self.languages:
                removed.append(Removed(doc, self.name, f"lang {lang} not in {','.join(sorted(self.languages))}"))
            elif score < self.min_score:
                removed.append(Removed(doc, self.name, f"lang_score {score} < {self.min_score}"))
            else:
                kept.append(doc)
        return kept, removed
