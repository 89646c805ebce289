"""MediaWiki XML dumps (``pages-articles*.xml[.bz2]``) as documents.

Pages are read one at a time between ``<page>`` and ``</page>`` lines, so memory
holds a single page and every page keeps its line number. Wiki markup is reduced
to plain text with a small set of regular expressions (templates, tables, refs,
links, emphasis); ``keep_markup: true`` keeps the raw wikitext instead.
"""
from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from typing import Iterator

from curate.io.sources import Shard, TruncatedInput, iter_lines
from curate.record import Document


def iter_pages(shard: Shard) -> Iterator[tuple[int, Document | str]]:
    """(line of ``<page>``, Document or the reason the page is not a document)."""
    chunk: list[bytes] | None = None
    start = 0
    try:
        for line, raw in iter_lines(shard):
            stripped = raw.strip()
            if stripped == b"<page>":
                chunk, start = [raw], line
            elif chunk is not None:
                chunk.append(raw)
                if stripped == b"</page>":
                    yield start, _page_to_doc(b"\n".join(chunk), shard, start)
                    chunk = None
    except TruncatedInput as e:
        yield e.line, f"truncated or corrupt compressed input: {e}"
        return
    if chunk is not None:
        yield start, "truncated page (no </page> before end of file)"


def _page_to_doc(xml: bytes, shard: Shard, line: int) -> Document | str:
    try:
        page = ET.fromstring(xml)
    except ET.ParseError as e:
        return f"malformed page XML: {e}"
    title = page.findtext("title") or ""
    ns = int(page.findtext("ns") or 0)
    if ns not in shard.spec.namespaces:
        return f"skipped page: namespace {ns} ({title})"
    redirect = page.find("redirect")
    if redirect is not None:
        return f"skipped page: redirect to {redirect.get('title', '?')}"
    text = page.findtext("revision/text") or ""
    if not shard.spec.keep_markup:
        text = strip_wikitext(text)
    if not text.strip():
        return "empty text"
    meta = {"title": title, "page_id": page.findtext("id"), "timestamp": page.findtext("revision/timestamp")}
    page_id = meta["page_id"]
    return Document(f"{shard.source}:{page_id}" if page_id else f"{shard.source}:{line}", text, shard.source, meta)


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|Media):[^\[\]]*\]\]", re.I)
_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]")
_EXT_LINK = re.compile(r"\[(?:https?|ftp)://[^\s\]]+\s*([^\]]*)\]")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)
_EMPHASIS = re.compile(r"'{2,}")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_LIST_MARK = re.compile(r"^[*#:;]+\s*", re.M)
_BLANKS = re.compile(r"\n{3,}")


def _until_stable(pattern: re.Pattern, repl: str, text: str) -> str:
    while True:
        new = pattern.sub(repl, text)
        if new == text:
            return text
        text = new


def strip_wikitext(text: str) -> str:
    """Plain text from wikitext: drop templates, tables, refs, files and categories;
    keep link labels, heading text and list item text."""
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _until_stable(_TEMPLATE, "", text)
    text = _until_stable(_TABLE, "", text)
    text = _until_stable(_LINK, r"\1", _until_stable(_FILE_LINK, "", text)) if "[[" in text else text
    text = _until_stable(_FILE_LINK, "", text)
    text = _EXT_LINK.sub(r"\1", text)
    text = _HEADING.sub(r"\1", text)
    text = _EMPHASIS.sub("", text)
    text = _TAG.sub("", text)
    text = _LIST_MARK.sub("", text)
    text = html.unescape(text)
    return _BLANKS.sub("\n\n", text).strip()
