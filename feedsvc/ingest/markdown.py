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

Bounded cost (issue 9 #12): one seed must never hold up the others for long, nor take the
process's memory. Measured on 1 MiB seeds, what costs is: html5ever (inside nh3), quadratic in
the nesting depth of the HTML it is given (80,000 nested `<div>`s: 15 s; 150,000 unclosed: 66
s); markdown-it's tokens, ~430 bytes each (a 600 KB table: 400,000 tokens, 190 MiB, 2 s);
references that repeat a long URL at every use (140,000 uses of a 900-character URL: 1 GiB);
and markdown-it's inline rules, ~10 µs per `[` that opens no link (1 MiB of them: 10 s).
Each is bounded where it arises, before the expensive step and deterministically (counts, not
time, so the same seed is accepted or refused on every machine):
- tokens are counted as markdown-it creates them (a subclass of its block and inline states),
  and parsing stops at MAX_ELEMENTS, raw HTML tags included;
- the calls of the inline rules and of the block rules (a few per line: the rules that may end
  a paragraph are tried at each of its lines) are counted (MAX_INLINE_STEPS, MAX_BLOCK_STEPS),
  which bounds parsing time (1 MiB of one-letter lines cost 8 s);
- before nh3, the tokens are walked once: the nesting of the HTML they make (Markdown's and the
  raw HTML's tags together) must stay within MAX_HTML_DEPTH, and the URLs that links and
  images repeat within MAX_RENDERED_CHARS.
Past a bound, the seed is rejected with the line where it was crossed (MarkdownTooHeavy).
Markdown's own block nesting is capped by markdown-it (maxNesting 20), a seed's size by
`[watch] max_seed_bytes`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.parser_block import ParserBlock
from markdown_it.parser_inline import ParserInline
from markdown_it.rules_block import StateBlock
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType

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

#: What one Markdown seed may cost. A real article stays well below each: 1 MiB of prose with
#: emphasis, links, lists, quotes, code blocks and a 200-row table (a book, in one seed) makes
#: 46,000 elements, 90,000 inline and 31,000 block steps, HTML 5 elements deep.
#: Markdown tokens plus raw HTML tags (a table cell is 4, a paragraph 3 plus its inline
#: pieces): ~45 MiB at most.
MAX_ELEMENTS = 100_000
#: Calls of markdown-it's inline rules: parsing time (~0.5 s at this bound, worst input).
MAX_INLINE_STEPS = 500_000
#: Calls of markdown-it's block rules, a few per line: block parsing time (1 MiB of one-letter
#: lines in one paragraph cost 8 s; ~1 s at this bound).
MAX_BLOCK_STEPS = 500_000
#: Depth of the HTML the sanitizer parses (html5ever's cost grows with its square).
MAX_HTML_DEPTH = 100
#: The HTML's size: the text, and the URLs links and images repeat (a reference definition is
#: written once and copied at every use).
MAX_RENDERED_CHARS = 4 * 1024 * 1024


class MarkdownTooHeavy(FeedsvcError):
    """A Markdown body past one of the bounds above. `line` is 0-based, in the text given to
    render_markdown; the parser turns it into the seed's line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Budget:
    """What a render has spent so far; kept in markdown-it's `env` (passed to every state)."""

    __slots__ = ("block_steps", "elements", "line", "steps")

    def __init__(self) -> None:
        self.elements = 0
        self.steps = 0
        self.block_steps = 0
        self.line = 0  # the line being parsed (block), or of the inline being parsed

    def element(self, line: int | None = None) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            at = self.line if line is None else line
            raise MarkdownTooHeavy(at, f"too much Markdown: more than {MAX_ELEMENTS:,} "
                                       f"elements (table cells, paragraphs, links, emphasis, "
                                       f"HTML tags…) by this line; split the article")


_BUDGET = "feedsvc_budget"


def _budget(env: EnvType) -> _Budget | None:
    budget = env.get(_BUDGET)
    return budget if isinstance(budget, _Budget) else None


class _CountedStateBlock(StateBlock):
    """Counts block tokens as they are made: a table's cells are counted before the next
    row is read, not once the whole table sits in memory."""

    def push(self, ttype: str, tag: str, nesting: Literal[-1, 0, 1]) -> Token:
        if (budget := _budget(self.env)) is not None:
            if budget.elements >= MAX_ELEMENTS:
                budget.element(self._current_line())
            budget.elements += 1
        return super().push(ttype, tag, nesting)

    def _current_line(self) -> int:
        """The table rule reads all its rows before it moves `line`: the row it is on is the
        map of the last token it made that has one."""
        for token in reversed(self.tokens[-8:]):
            if token.map:
                return max(self.line, token.map[0])
        return self.line


class _CountedStateInline(StateInline):
    def push(self, ttype: str, tag: str, nesting: Literal[-1, 0, 1]) -> Token:
        if (budget := _budget(self.env)) is not None:
            budget.element()
        return super().push(ttype, tag, nesting)

    def pushPending(self) -> Token:
        if (budget := _budget(self.env)) is not None:
            budget.element()
        return super().pushPending()


class _CountedParserBlock(ParserBlock):
    def parse(self, src: str, md: MarkdownIt, env: EnvType, outTokens: list[Token]
              ) -> list[Token] | None:
        if not src:
            return None
        state = _CountedStateBlock(src, md, env, outTokens)
        self.tokenize(state, state.line, state.lineMax)
        return state.tokens


class _CountedParserInline(ParserInline):
    def parse(self, src: str, md: MarkdownIt, env: EnvType, tokens: list[Token]
              ) -> list[Token]:
        state = _CountedStateInline(src, md, env, tokens)
        self.tokenize(state)
        for rule in self.ruler2.getRules(""):
            rule(state)
        return state.tokens


def _inline_core_rule(state: StateCore) -> None:
    """markdown-it's core "inline" rule, which also tells the budget which line it is on."""
    budget = _budget(state.env)
    for token in state.tokens:
        if token.type == "inline":
            if budget is not None and token.map:
                budget.line = token.map[0]
            if token.children is None:
                token.children = []
            state.md.inline.parse(token.content, state.md, state.env, token.children)


def _counted(rule: Callable[[StateInline, bool], bool]) -> Callable[[StateInline, bool], bool]:
    def counted_rule(state: StateInline, silent: bool) -> bool:
        if (budget := _budget(state.env)) is not None:
            budget.steps += 1
            if budget.steps > MAX_INLINE_STEPS:
                raise MarkdownTooHeavy(budget.line, f"too much inline Markdown to read: more "
                                                    f"than {MAX_INLINE_STEPS:,} steps by this "
                                                    f"line (unclosed brackets, backticks or "
                                                    f"emphasis?); split the article")
        return rule(state, silent)

    return counted_rule


def _counted_block(rule: Callable[[StateBlock, int, int, bool], bool]
                   ) -> Callable[[StateBlock, int, int, bool], bool]:
    def counted_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
        if (budget := _budget(state.env)) is not None:
            budget.block_steps += 1
            if budget.block_steps > MAX_BLOCK_STEPS:
                raise MarkdownTooHeavy(start, f"too many lines of Markdown to read: more than "
                                              f"{MAX_BLOCK_STEPS:,} steps by this line; split "
                                              f"the article")
        return rule(state, start, end, silent)

    return counted_rule


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True})
    md.block = _CountedParserBlock()
    md.inline = _CountedParserInline()
    # The new parsers come with every rule on: the preset's choice is made again.
    md.configure("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.core.ruler.at("inline", _inline_core_rule)
    for rule in md.inline.ruler.__rules__:
        md.inline.ruler.at(rule.name, _counted(rule.fn), {"alt": list(rule.alt)})
    # Also the rules that end a paragraph, tried at each of its lines: one fn per rule.
    for block_rule in md.block.ruler.__rules__:  # `at` would drop the chains unless told
        md.block.ruler.at(block_rule.name, _counted_block(block_rule.fn),
                          {"alt": list(block_rule.alt)})
    return md


_MARKDOWN = _markdown()


def render_markdown(text: str, base_url: str) -> RenderedMarkdown:
    """Render Markdown `text`; relative URLs are resolved against `base_url` (an absolute
    http(s) URL ending with "/"). Raises MarkdownTooHeavy (with the line, 0-based in `text`)
    for a body past the bounds above; nothing else about `text` makes it raise."""
    cleaner = _cleaner(base_url)
    env: EnvType = {_BUDGET: _Budget()}
    tokens = _MARKDOWN.parse(_NOT_XML_RE.sub("", text), env)
    _check_structure(tokens, env[_BUDGET])
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


_RAW_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "image", "input", "link",
                   "meta", "param", "source", "track", "wbr", "keygen", "basefont", "bgsound",
                   "frame"})
# Elements whose end tag may be left out: HTML closes them by itself (a `<li>` closes the
# previous `<li>`, `</ul>` closes an open `<li>`), and so does html5ever.
_OPTIONAL_END = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot",
                           "caption", "colgroup", "option", "optgroup", "rb", "rt", "rp", "rtc"})


class _Nesting:
    """How deep the HTML html5ever will build gets, never underestimated: an end tag closes
    its element only when what is above it may be closed implicitly (elements of
    _OPTIONAL_END); everything else stays open, as unclosed tags may stay in html5ever
    (formatting elements are even reopened in every following paragraph)."""

    def __init__(self) -> None:
        self.stack: list[str] = []

    def open(self, name: str, line: int) -> None:
        if name in _VOID:
            return
        if name in _OPTIONAL_END and self.stack and self.stack[-1] == name:
            self.stack.pop()
        self.stack.append(name)
        if len(self.stack) > MAX_HTML_DEPTH:
            raise MarkdownTooHeavy(line, f"HTML nested more than {MAX_HTML_DEPTH} elements "
                                         f"deep by this line (unclosed tags?)")

    def close(self, name: str) -> None:
        stack = self.stack
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] == name:
                del stack[index:]
                return
            if stack[index] not in _OPTIONAL_END:
                return  # not closed implicitly: counted as open

    def raw(self, html: str, line: int, budget: _Budget, count: bool) -> None:
        """The tags of raw HTML (starting on `line`), each an element when `count`."""
        at, last = line, 0
        for match in _RAW_TAG_RE.finditer(html):
            at += html.count("\n", last, match.start())
            last = match.start()
            if count:
                budget.element(at)
            name = match.group(2).lower()
            if match.group(1):
                self.close(name)
            else:
                self.open(name, at)


def _check_structure(tokens: list[Token], budget: _Budget) -> None:
    """Before rendering and sanitizing: the depth of the HTML the tokens make, raw HTML
    included, and how big the HTML will be."""
    nesting = _Nesting()
    size = 0
    line = 0
    for token in tokens:
        if token.map:
            line = token.map[0]
        size += len(token.content)
        if token.type == "html_block":
            nesting.raw(token.content, line, budget, count=True)
        elif token.type in ("fence", "code_block"):
            budget.element(line)  # one token, two elements: <pre><code>
        elif token.nesting == 1:
            nesting.open(token.tag, line)
        elif token.nesting == -1:
            nesting.close(token.tag)
        for child in token.children or ():
            if child.type == "html_inline":  # one tag, already counted as a token
                nesting.raw(child.content, line, budget, count=False)
            elif child.nesting == 1:
                nesting.open(child.tag, line)
            elif child.nesting == -1:
                nesting.close(child.tag)
            if child.type in ("link_open", "image"):
                size += sum(len(value) for value in child.attrs.values()
                            if isinstance(value, str))
        if size > MAX_RENDERED_CHARS:
            raise MarkdownTooHeavy(line, f"the HTML would be over {MAX_RENDERED_CHARS:,} "
                                         f"characters by this line (links or images that "
                                         f"repeat a long URL?)")


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
    # Read only as far as the answer: on a long article, Python's HTMLParser over the whole
    # HTML cost more than markdown-it and nh3 together. nh3 writes `<p>` without attributes
    # (none is allowed), so when there is none, the first block with text is the answer.
    has_paragraph = "<p>" in safe_html
    checked = 0
    for start in range(0, len(safe_html), _FEED_CHARS):
        parser.feed(safe_html[start:start + _FEED_CHARS])
        if not has_paragraph and parser.blocks:
            return parser.blocks[0][1]
        for tag, text in parser.blocks[checked:]:
            if tag == "p":
                return text
        checked = len(parser.blocks)
    parser.close()
    paragraphs = (text for tag, text in parser.blocks if tag == "p")
    return next(paragraphs, parser.blocks[0][1] if parser.blocks else "")


_FEED_CHARS = 4096
