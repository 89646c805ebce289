"""Redact personal data: e-mail addresses, IP addresses and phone numbers."""
from __future__ import annotations

import ipaddress
import re

from curate.pipeline.step import Step, register

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b")
# Candidates only; each is validated with the ipaddress module before it is redacted.
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
# North American numbers with separators or parentheses, and international numbers
# written with a leading + (7 to 15 digits in groups).
PHONE = re.compile(
    r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"
    r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w-])"
)


def _valid_ip(s: str) -> bool:
    if not any(c.isalnum() for c in s):  # a bare "::" in prose is not an address
        return False
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


@register("pii")
class Pii(Step):
    """Replace e-mail addresses, IP addresses (v4 and v6, validated) and phone numbers
    with a placeholder. ``kinds`` picks which; each ``<kind>_replacement`` sets the text
    written instead. Counts go to ``counters["pii_<kind>"]`` and the number of documents
    changed to ``counters["pii_docs"]``. Nothing is removed."""

    def __init__(self, kinds: list[str] | None = None, email_replacement: str = "<EMAIL>",
                 ip_replacement: str = "<IP>", phone_replacement: str = "<PHONE>", text_key: str = "text"):
        super().__init__()
        if isinstance(kinds, str):  # `kinds: email` means one kind, not the letters of a word
            kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        kinds = list(kinds or ("email", "ip", "phone"))
        unknown = set(kinds) - {"email", "ip", "phone"}
        if unknown:
            raise ValueError(f"pii: unknown kind(s) {sorted(unknown)}; known: email, ip, phone")
        self.kinds = kinds
        self.replacement = {"email": email_replacement, "ip": ip_replacement, "phone": phone_replacement}
        if text_key != "text":
            raise ValueError("pii rewrites the text, so text_key must be 'text'")

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with PII replaced, and how many of each kind were found."""
        found = {}
        # E-mail first: an address can contain digits that look like an IP or phone.
        if "email" in self.kinds and "@" in text:
            text, found["email"] = EMAIL.subn(self.replacement["email"], text)
        if "ip" in self.kinds:
            n = 0

            def sub_ip(m):
                nonlocal n
                if _valid_ip(m.group()):
                    n += 1
                    return self.replacement["ip"]
                return m.group()

            if "." in text:
                text = IPV4.sub(sub_ip, text)
            if "::" in text or text.count(":") >= 7:
                text = IPV6.sub(sub_ip, text)
            found["ip"] = n
        if "phone" in self.kinds:
            text, found["phone"] = PHONE.subn(self.replacement["phone"], text)
        return text, found

    def process(self, docs):
        for doc in docs:
            new, found = self.redact(doc.text)
            if new != doc.text:
                doc.text = new
                self.counters["pii_docs"] += 1
                for kind, n in found.items():
                    if n:
                        self.counters[f"pii_{kind}"] += n
        return docs, []
