"""Quality filters: datatrove-equivalent Gopher, C4 and FineWeb rules, language ID,
PII redaction, simple rules and ``keep_if``. Importing this package registers the steps."""
from curate.filters import c4, fineweb, gopher, keep_if, lang, pii, simple  # noqa: F401
