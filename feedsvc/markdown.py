"""Markdown seed bodies → a sanitized HTML fragment and a plain-text first paragraph. Pure.

markdown-it-py renders CommonMark plus tables and strikethrough, with raw HTML allowed in the
source; nh3 (ammonia) then keeps only an allow-list of tags and attributes, so that whatever
the source holds, the result carries no script, no event handler, no style, no frame and no URL
other than http, https or mailto. Relative URLs in `href` and `src` are resolved against the
feed's base URL by nh3, with the URL standard's rules (the ones readers' browsers apply):
entries are read out of context, where a relative reference points nowhere.

Decisions:
- Links get no `rel`: the text is the site owner's, not a stranger's, and `target` is not
  allowed, so `noopener` would protect nothing while `noreferrer` would hide from the linked
  sites where their readers come from. A `rel` written in the source is dropped.
- `class`, `id`, `style` and `srcset` are dropped (readers restyle entries anyway; `srcset` would
  be one more list of URLs to resolve). Table column alignment, which markdown-it writes as
  `style="text-align:…"`, is turned into the `align` attribute first so that it survives.
- The contents of `<script>`, `<style>`, `<iframe>`, `<svg>`… go with them; other unknown tags
  (`<form>`, `<button>`, `<font>`…) are removed and their text kept.
- U+00A0 is written as the character, not `&nbsp;`: French typography reaches the reader
  character for character. Characters XML 1.0 forbids are removed (the input is checked too).

Known cost: html5ever (inside nh3) is quadratic in the nesting depth of raw HTML, about 3 s for
50 000 nested `<div>`s; Markdown's own nesting is capped by markdown-it, and a seed's size by
`[watch] max_seed_bytes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from feedsvc.errors import FeedsvcError


class BaseUrlError(FeedsvcError, ValueError):
    """The base URL relative references are resolved against is not an absolute http(s) URL
    ending with "/" (config.py guarantees it is; this is a programming error)."""


@dataclass(frozen=True, slots=True)
class RenderedMarkdown:
    html: str  # sanitized HTML fragment, every URL absolute
    first_paragraph: str  # plain text of the first paragraph (or text block); "" if none


ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})

# What articles need, nothing that runs, loads a frame or restyles the reader's page.
ALLOWED_TAGS = frozenset({
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "div", "span",
    "em", "strong", "b", "i", "u", "s", "del", "ins", "sup", "sub", "small", "mark",
    "abbr", "cite", "q", "kbd", "samp", "var", "code", "pre", "blockquote",
    "a", "img", "figure", "figcaption",
    "ul", "ol", "li", "dl", "dt", "dd",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
})
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
}
# `align` is only kept with a value readers understand (nh3 wants it out of ALLOWED_ATTRIBUTES).
_ALIGNMENTS = {"left", "center", "right"}
ALLOWED_ATTRIBUTE_VALUES: dict[str, dict[str, set[str]]] = {
    "th": {"align": _ALIGNMENTS},
    "td": {"align": _ALIGNMENTS},
}
# Removed with everything inside: their content is code, styles or fallback for a frame.
DROPPED_WITH_CONTENT = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript",
    "noembed", "noframes", "template", "svg", "math", "textarea", "select", "title", "xmp",
})

# Characters XML 1.0 cannot carry (lone surrogates can reach a str through "surrogateescape").
_NOT_XML_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# markdown-it writes a table column's alignment as a style, which the sanitizer drops.
_TEXT_ALIGN_RE = re.compile(r"text-align:(left|center|right)")
# Only ASCII whitespace is collapsed: a non-breaking space is typography (« », :) and stays.
_ASCII_WHITESPACE_RE = re.compile(r"[ \t\n\r\f]+")

_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def render_markdown(text: str, base_url: str) -> RenderedMarkdown:
    """Render Markdown `text`; relative URLs are resolved against `base_url` (an absolute
    http(s) URL ending with "/"). Never raises because of `text`."""
    cleaner = _cleaner(base_url)
    tokens = _MARKDOWN.parse(_NOT_XML_RE.sub("", text))
    _alignment_as_attribute(tokens)
    raw_html = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})
    # html5ever writes U+00A0 as "&nbsp;"; any "&" the text holds comes out as "&amp;", so every
    # "&nbsp;" left in its output stands for the character.
    safe_html = cleaner.clean(raw_html).replace("&nbsp;", "\u00a0")
    safe_html = _NOT_XML_RE.sub("", safe_html)  # &#1; in raw HTML decodes to U+0001
    return RenderedMarkdown(html=safe_html, first_paragraph=first_paragraph_text(safe_html))


@lru_cache(maxsize=16)  # one feed has one base URL; tests use a few
def _cleaner(base_url: str) -> nh3.Cleaner:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not base_url.endswith("/"):
        raise BaseUrlError(f"base URL must be an absolute http(s) URL ending with '/': "
                           f"{base_url!r}")
    try:
        return nh3.Cleaner(
            tags=set(ALLOWED_TAGS),
            clean_content_tags=set(DROPPED_WITH_CONTENT),
            attributes=ALLOWED_ATTRIBUTES,
            tag_attribute_values=ALLOWED_ATTRIBUTE_VALUES,
            url_schemes=set(ALLOWED_URL_SCHEMES),
            url_relative=("rewrite_with_base", base_url),
            link_rel=None,
            strip_comments=True,
        )
    except ValueError as e:  # a base URL urlsplit accepts but the URL standard does not
        raise BaseUrlError(f"base URL {base_url!r} is not usable: {e}") from e


def _alignment_as_attribute(tokens: list[Token]) -> None:
    for token in tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrs.pop("style", None)
            if isinstance(style, str) and (match := _TEXT_ALIGN_RE.fullmatch(style)):
                token.attrs["align"] = match.group(1)


# Elements whose text is one block of its own: a new one starts at each of their tags.
_BLOCK_TAGS = frozenset({
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "div", "blockquote", "pre", "figure",
    "figcaption", "ul", "ol", "li", "dl", "dt", "dd",
    "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
})
_VOID_BLOCK_TAGS = frozenset({"hr"})


class _TextBlocks(HTMLParser):
    """Splits sanitized HTML into (innermost block tag, text) pieces, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self._open: list[str] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS or tag in _VOID_BLOCK_TAGS:
            self._flush()
            if tag in _BLOCK_TAGS:
                self._open.append(tag)
        elif tag == "br":
            self._text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()
            if self._open and self._open[-1] == tag:  # always, in nh3's well-formed output
                self._open.pop()
            elif tag in self._open:  # a stray end tag closes what it encloses, as in HTML
                del self._open[len(self._open) - 1 - self._open[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = _ASCII_WHITESPACE_RE.sub(" ", "".join(self._text)).strip(" ")
        self._text = []
        if text:
            self.blocks.append((self._open[-1] if self._open else "", text))


def first_paragraph_text(safe_html: str) -> str:
    """The plain text of the first `<p>` that has any (headings before it are skipped, a `<p>`
    inside a list or a quote counts); without one, the first block with text (a heading, a
    list item, a cell); "" when there is no text at all. ASCII whitespace is collapsed."""
    parser = _TextBlocks()
    parser.feed(safe_html)
    parser.close()
    paragraphs = (text for tag, text in parser.blocks if tag == "p")
    return next(paragraphs, parser.blocks[0][1] if parser.blocks else "")
