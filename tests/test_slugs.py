"""Slugs from titles and tags: transliterated, apostrophes dropped, seed-slug shaped, bounded."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc.ingest.parser import is_slug
from feedsvc.ingest.slugs import TAG_SLUG_MAX, slugify_title, tag_slug

# The seed slug rule, written out here so that a change in the parser cannot hide a bad slug.
SEED_SLUG_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@pytest.mark.parametrize(("title", "expected"), [
    ("Titre de l’article", "titre-de-larticle"),
    ("Titre de l'article", "titre-de-larticle"),
    ("l\u02bcarticle", "larticle"),  # modifier letter apostrophe
    ("Été 2026 : « bilan »", "ete-2026-bilan"),
    ("Été\u00a02026\u00a0: «\u00a0bilan\u00a0»", "ete-2026-bilan"),  # NBSP separates words
    ("Œuvre & cœur", "oeuvre-coeur"),
    ("Straße", "strasse"),
    ("À l’ÉCOLE, ça va ?", "a-lecole-ca-va"),
    ("rock ’n’ roll", "rock-n-roll"),
    ("  --Déjà--vu--  ", "deja-vu"),
    ("Hello, World!", "hello-world"),
    ("AT&amp;T", "at-amp-t"),  # plain text: entities are what the author typed
    ("emoji 🎉 fête", "emoji-fete"),
    ("ﬁn", "fin"),  # ligature
    ("Мьянма", "mianma"),  # transliterated, the soft sign's apostrophe dropped
    ("東京", "dong-jing"),  # text-unidecode reads Han characters in Mandarin
    ("!!!", ""),
    ("’’", ""),
    ("🎉", ""),
    ("", ""),
])
def test_slugify_title(title: str, expected: str) -> None:
    assert slugify_title(title) == expected


@pytest.mark.parametrize(("tag", "expected"), [
    ("Économie", "economie"),
    ("Logiciel libre", "logiciel-libre"),
    ("C’est l’été", "cest-lete"),
    ("python", "python"),
    ("C++", "c"),
    ("Web 2.0", "web-2-0"),
    ("", ""),
])
def test_tag_slug(tag: str, expected: str) -> None:
    assert tag_slug(tag) == expected


@pytest.mark.parametrize(("title", "max_length", "expected"), [
    ("un deux trois", 13, "un-deux-trois"),  # fits exactly
    ("un deux trois", 12, "un-deux"),  # never a piece of the last word
    ("un deux trois", 8, "un-deux"),  # the "-" right after the limit: a whole word fits
    ("un deux trois", 7, "un-deux"),
    ("un deux trois", 6, "un-deu"),  # the only boundary is too early: cut inside the word
    ("abc def", 4, "abc"),  # never ending with "-"
    ("a" * 200, 128, "a" * 128),  # one word longer than the limit
    ("x", 1, "x"),
])
def test_slugify_title_cuts_at_a_word_boundary(title: str, max_length: int,
                                               expected: str) -> None:
    assert slugify_title(title, max_length=max_length) == expected


def test_title_slug_is_at_most_a_seed_slug_by_default() -> None:
    slug = slugify_title("mot " * 100)
    assert slug == "-".join(["mot"] * 32)  # 127 characters: a 33rd word would make 131
    assert is_slug(slug)


def test_tag_slug_is_at_most_100_characters() -> None:
    slug = tag_slug("étiquette " * 20)
    assert slug == "-".join(["etiquette"] * 10)  # 99 characters
    assert len(tag_slug("a" * 300)) == TAG_SLUG_MAX


@pytest.mark.parametrize("max_length", [0, -1])
def test_max_length_must_be_positive(max_length: int) -> None:
    with pytest.raises(ValueError, match="max_length"):
        slugify_title("titre", max_length=max_length)


@given(title=st.text(), max_length=st.integers(min_value=1, max_value=200))
def test_any_title_gives_a_seed_slug_or_nothing(title: str, max_length: int) -> None:
    slug = slugify_title(title, max_length=max_length)
    assert slug == "" or SEED_SLUG_RE.fullmatch(slug), slug
    assert len(slug) <= max_length
    full = slugify_title(title, max_length=10_000)
    assert full.startswith(slug)  # a cut slug is the start of the whole one…
    if len(slug) < len(full) and full[len(slug)] != "-":
        # …cut inside a word only when no word ends in the second half of the limit
        assert "-" not in full[max_length // 2:max_length + 1]


@given(tag=st.text())
def test_any_tag_gives_a_slug_of_at_most_100_characters(tag: str) -> None:
    slug = tag_slug(tag)
    assert slug == "" or (SEED_SLUG_RE.fullmatch(slug) and is_slug(slug))
    assert len(slug) <= TAG_SLUG_MAX
