"""parse_seed is pure: bytes in, Entry or Rejection out. Data-driven."""

from __future__ import annotations

import dataclasses
import gc
import html
import pickle

import pytest

from feedsvc.errors import FeedsvcError, Rejection, SeedError
from feedsvc.ingest.parser import content_hash, parse_seed, slug_from_name, summarize
from feedsvc.model import Entry

from .conftest import SAMPLE_SEED, SAMPLE_SLUG


def parse_ok(data: bytes | str, name: str = "seeds/a.txt") -> Entry:
    result = parse_seed(name, data.encode() if isinstance(data, str) else data)
    assert isinstance(result, Entry), result
    return result


def parse_error(data: bytes | str, name: str = "seeds/a.txt") -> Rejection:
    result = parse_seed(name, data.encode() if isinstance(data, str) else data)
    assert isinstance(result, Rejection), result
    return result


def test_sample_seed_keeps_every_character() -> None:
    raw = SAMPLE_SEED.read_bytes()
    entry = parse_ok(raw, str(SAMPLE_SEED))
    lines = raw.decode("utf-8").split("\n")
    assert entry.slug == SAMPLE_SLUG == lines[0]
    assert entry.title == lines[1]
    assert list(entry.paragraphs) == [line for line in lines[3:] if line]
    # Every character of the body reaches the HTML, escaped as text and nothing else.
    unescaped = html.unescape(entry.content_html.replace("<p>", "").replace("</p>", ""))
    assert unescaped == "\n".join(entry.paragraphs)
    non_ascii = {char for char in raw.decode("utf-8") if ord(char) > 127}
    assert {"«", "»", "’", "é"} <= non_ascii
    assert non_ascii <= set(entry.title + entry.content_html)
    assert entry.warnings == ()


@pytest.mark.parametrize("variant", [
    pytest.param(lambda b: b + b"\n", id="final-newline"),
    pytest.param(lambda b: b.replace(b"\n", b"\r\n"), id="crlf"),
    pytest.param(lambda b: b"\xef\xbb\xbf" + b, id="bom"),
    pytest.param(lambda b: b.replace(b"\n", b"  \n"), id="trailing-blanks"),
    pytest.param(lambda b: b + b"\n\n\n", id="trailing-blank-lines"),
    pytest.param(lambda b: b.replace(b"\n\n", b"\n\n\n"), id="extra-blank-lines"),
])
def test_equivalent_spellings_give_the_same_entry(variant) -> None:
    raw = SAMPLE_SEED.read_bytes()
    assert parse_ok(variant(raw)) == parse_ok(raw)


def test_soft_break_stays_inside_the_paragraph() -> None:
    entry = parse_ok("s\nTitle\n\nline one\nline two\n\nsecond")
    assert entry.paragraphs == ("line one\nline two", "second")
    assert entry.content_html == "<p>line one\nline two</p>\n<p>second</p>"
    assert entry.summary == "line one line two"


def test_markup_in_a_seed_is_text() -> None:
    entry = parse_ok('s\nA <b>bold</b> & "title"\n\n<script>alert(1)</script> & co')
    assert entry.title == 'A <b>bold</b> & "title"'
    assert entry.content_html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"


def test_non_breaking_spaces_survive_at_line_ends() -> None:
    nbsp = "\u00a0"
    entry = parse_ok(f"s\nTitre{nbsp}:\n\n«{nbsp}citation{nbsp}»{nbsp}\n\nfin")
    assert entry.title == f"Titre{nbsp}:"
    assert entry.paragraphs[0] == f"«{nbsp}citation{nbsp}»{nbsp}"


@pytest.mark.parametrize(("name", "text", "slug", "title"), [
    ("Mon Article.txt", "Un titre\n\nCorps", "mon-article", "Un titre"),
    ("Été 2026 — bilan.txt", "Un titre\n\nCorps", "ete-2026-bilan", "Un titre"),
    ("x.txt", "Ceci n'est pas un slug\n\nCorps", "x", "Ceci n'est pas un slug"),
    ("x.txt", "mon-slug\nLe titre\n\nCorps", "mon-slug", "Le titre"),
])
def test_slug_from_line_one_or_from_the_file_name(name, text, slug, title) -> None:
    entry = parse_ok(text, f"seeds/{name}")
    assert (entry.slug, entry.title) == (slug, title)


def test_slug_from_name() -> None:
    assert slug_from_name("/x/Hello, World!.txt") == "hello-world"
    assert slug_from_name("«».txt") == ""


@pytest.mark.parametrize(("data", "line", "fragment"), [
    pytest.param(b"", 1, "empty seed", id="empty"),
    pytest.param(b"  \n\t\n \r\n", 1, "empty seed", id="whitespace-only"),
    pytest.param(b"just-a-slug", 2, "missing headline", id="slug-only"),
    pytest.param(b"slug\n\n\nbody", 2, "missing headline", id="blank-headline"),
    pytest.param(b"slug\nHeadline", 3, "no body", id="no-body"),
    pytest.param(b"slug\nHeadline\n\n\n", 3, "no body", id="blank-body"),
    pytest.param(b"Un titre sans slug", 2, "no body", id="headline-only"),
    pytest.param(b"slug\nHeadline\nbody right away", 3, "blank line", id="no-blank-line"),
    pytest.param(b"\nslug\nHeadline\n\nbody", 1, "line 1 is blank", id="blank-first-line"),
    pytest.param(b"slug\nHead\n\nok\n\xff bad", 5, "not valid UTF-8", id="not-utf8"),
    pytest.param(b"slug\nT\xc3\n\nx", 2, "not valid UTF-8", id="truncated-utf8"),
    pytest.param(b"a" * 129 + b"\nHead\n\nbody", 1, "at most 128", id="slug-too-long"),
    pytest.param(b"s\n" + b"h" * 1001 + b"\n\nbody", 2, "at most 1000", id="headline-too-long"),
    pytest.param("\u00ab\u00bb\n\nbody".encode(), 1, "no slug", id="no-slug-possible"),
])
def test_unusable_seeds_name_the_line(data: bytes, line: int, fragment: str) -> None:
    name = "seeds/\u00ab\u00bb.txt" if fragment == "no slug" else "seeds/a.txt"
    error = parse_error(data, name)
    assert error.path == name
    assert error.line == line
    assert fragment in error.message
    assert str(error) == f"{name}:{line}: {error.message}"


def test_not_utf8_names_the_offset() -> None:
    error = parse_error(b"\xef\xbb\xbfslug\nH\xe9llo\n\nx")
    assert error.line == 2
    assert "(0xe9)" in error.message and "byte offset 9" in error.message


def test_control_characters_are_removed_with_a_warning() -> None:
    entry = parse_ok("s\nTi\x01tle\x1b\n\nbo\x07dy\ufffe\x85 \x9f\x7f")
    assert entry.title == "Title"
    assert entry.paragraphs == ("body",)
    assert [line for line, _ in entry.warnings] == [2, 4]
    assert "U+0001" in entry.warnings[0][1] and "2 control" in entry.warnings[0][1]


def test_nul_bytes_mean_binary_and_are_refused() -> None:
    error = parse_error(b"slug\nTitle\n\nok\n\x89PNG\x00\x00")
    assert (error.line, error.message) == (5, "contains NUL bytes: a binary file, not text")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_bom_is_decoded(encoding: str) -> None:
    raw = SAMPLE_SEED.read_bytes().decode("utf-8")
    bom = "\ufeff".encode(encoding)
    assert parse_ok(bom + raw.encode(encoding)) == parse_ok(raw)


def test_broken_utf16_and_lone_surrogates_name_the_line() -> None:
    data = "\ufeffslug\nTitle\n\nok\n".encode("utf-16-le") + b"\x00\xd8" + b"a\x00"
    error = parse_error(data)
    assert error.line == 5 and "not valid UTF-16" in error.message
    surrogate = b"slug\nTitle\n\n\xed\xa0\x80"  # U+D800 written as UTF-8: not UTF-8
    error = parse_error(surrogate)
    assert error.line == 4 and "not valid UTF-8" in error.message


@pytest.mark.parametrize(("length", "expected_max"),
                         [(10, 10), (300, 300), (301, 301), (5000, 301)])
def test_summary_is_cut_at_a_word_near_300(length: int, expected_max: int) -> None:
    words = ("mot " * 2000)[:length].strip()
    summary = summarize(words)
    assert len(summary) <= expected_max
    if length > 300:
        assert summary.endswith("…")
        assert summary[:-1] == summary[:-1].rstrip()
        assert words.startswith(summary[:-1])
        assert words[len(summary) - 1] == " "  # cut at a word boundary
    else:
        assert summary == words


def test_summary_of_one_huge_word_is_cut_inside_it() -> None:
    assert summarize("x" * 1000) == "x" * 300 + "…"


def test_content_hash_follows_headline_and_body_only() -> None:
    a = parse_ok("one\nTitle\n\nBody", "seeds/a.txt")
    b = parse_ok("one\nTitle\n\nBody\n", "seeds/other-name.txt")
    c = parse_ok("one\nTitle\n\nBody!", "seeds/a.txt")
    d = parse_ok("one\nTitle!\n\nBody", "seeds/a.txt")
    assert a.content_hash == b.content_hash == content_hash("Title", ("Body",))
    assert len({a.content_hash, c.content_hash, d.content_hash}) == 3


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("heavy\nLourd\n\nIntro.\n\n" + "<div>" * 80_000 + "x" + "</div>" * 80_000, 6, "nested"),
    ("---\ntitle: Lourd\nslug: heavy\n---\n\nIntro.\n\n" + "<div>" * 80_000, 8, "nested"),
    # 3 tokens for "Intro.", 12 for the table's head, 8 per row: the 12,499th row (line
    # 6 + 12,499) makes the 100,001st token.
    ("# Lourd\n\nIntro.\n\n| a | b |\n|---|---|\n" + "| x | y |\n" * 40_000, 6 + 12_499,
     "more than 100,000 elements"),
])
def test_a_markdown_seed_past_a_bound_is_rejected_at_its_line(
        text: str, line: int, fragment: str) -> None:
    """Issue 9 #12: one heavy seed must not cost seconds and hundreds of MiB; it is refused,
    with the line of the seed where the bound was crossed."""
    result = parse_seed("seeds/heavy.md", text.encode())
    assert isinstance(result, Rejection), result
    assert (result.path, result.line) == ("seeds/heavy.md", line)
    assert fragment in result.message
    assert str(result).startswith(f"seeds/heavy.md:{line}: ")


def test_a_rejection_keeps_nothing_of_the_parse_alive() -> None:
    """A rejection lives as long as its file stays bad: it is the value (path, line, message),
    never the exception, whose traceback would hold the parse's frames, and with them the
    seed's text and a Markdown body's tokens (a table refused at its bound kept 40 MiB)."""
    for name, text in (("a.txt", "only a headline"),
                       ("b.md", "b\nB\n\n" + "<div>" * 1000)):
        result = parse_seed(name, text.encode())
        assert type(result) is Rejection
        assert not hasattr(result, "__dict__") and not hasattr(result, "__traceback__")
        held = {id(x) for x in gc.get_referents(result)}
        assert held <= {id(result.path), id(result.line), id(result.message), id(Rejection)}


def test_a_rejection_is_a_frozen_value_and_seed_error_carries_one() -> None:
    first = parse_seed("a.txt", b"only a headline")
    again = parse_seed("a.txt", b"only a headline")
    assert isinstance(first, Rejection) and first == again and hash(first) == hash(again)
    assert first is not again and {first, again} == {first}
    assert pickle.loads(pickle.dumps(first)) == first  # snapshots go to worker processes
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.line = 2  # type: ignore[misc]
    error = SeedError("a.txt", 3, "no body")
    assert isinstance(error, FeedsvcError) and not isinstance(error, Rejection)
    assert error.rejection == Rejection("a.txt", 3, "no body")
    assert str(error) == str(error.rejection) == "a.txt:3: no body"
    assert (error.path, error.line, error.message) == ("a.txt", 3, "no body")
    assert pickle.loads(pickle.dumps(error)).rejection == error.rejection
