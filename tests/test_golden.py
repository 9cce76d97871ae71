"""Golden bytes: a fixed corpus, a fixed clock and a fresh state render to the documents stored
under tests/data/golden/, byte for byte.

The files were written from the code before the document registry existed; refactorings must
keep the Atom and RSS bytes identical (issue 10). To write them again after a deliberate change
of the output: FEEDSVC_WRITE_GOLDEN=1 pytest tests/test_golden.py, and review the diff.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedsvc.config import load_config
from feedsvc.publish.publisher import Publisher
from feedsvc.state.store import Store
from tests.conftest import write_config, write_seed

GOLDEN = Path(__file__).parent / "data" / "golden"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
T = datetime(2026, 11, 20, 8, 30, tzinfo=UTC).timestamp()

CORPUS: dict[str, str] = {
    "premiere-lumiere.txt": (
        "premiere-lumiere\n"
        "Le télescope voit sa « première lumière »\n\n"
        "Un paragraphe en français : l’équipe a vu 3 < 4 & c’est tout.\n"
        "Une deuxième ligne du même paragraphe.\n\n"
        "Le second paragraphe, avec une espace\u00a0insécable.\n"),
    "vie-du-projet.txt": (
        "---\n"
        'title: "Nouvelles du projet : « bilan » d’automne"\n'
        "slug: bilan-automne\n"
        "date: mardi 17 novembre 2026 à 8h30\n"
        "updated: 2026-11-18 10:00\n"
        "author:\n  name: Zoé Martin\n  email: zoe@exemple.fr\n"
        "tags: [Astronomie, Vie du projet]\n"
        "summary: Ce qu’on a vu cette nuit, et ce qui vient.\n"
        "lang: en\n"
        "---\n\n"
        "Le premier paragraphe.\n\n"
        "Le second paragraphe.\n"),
    "telescope.md": (
        "---\ntags: Astronomie\n---\n"
        "# Notes <b>d’observation</b>\n\n"
        "Un *premier* paragraphe avec un [lien](/docs/a) et `du code`.\n\n"
        "- un\n- deux\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"),
}


def _corpus_documents(tmp_path: Path) -> dict[str, bytes]:
    write_config(tmp_path, port=8080, title="Nouvelles « du ciel »",
                 subtitle="Ce qu’on voit & ce qu’on en dit", author_name="L’équipe")
    config = load_config(tmp_path / "config.toml")
    for i, (name, text) in enumerate(sorted(CORPUS.items())):
        write_seed(config.paths.seeds, name, text, mtime=T + 3600 * i)
    publisher = Publisher(config, Store.open(config.paths.state), clock=lambda: NOW)
    try:
        snapshot = publisher.scan()
    finally:
        publisher.close()
    assert snapshot.rejected == () and snapshot.published_count == 3
    return {path: doc.body for path, doc in snapshot.documents.items()}


def _file_name(path: str) -> str:
    return "index.html" if path == "/" else path[1:].replace("/", "__")


def test_a_fixed_corpus_renders_to_the_stored_bytes(tmp_path: Path) -> None:
    documents = _corpus_documents(tmp_path)
    if os.environ.get("FEEDSVC_WRITE_GOLDEN"):
        for old in GOLDEN.glob("*"):
            old.unlink()
        for path, body in documents.items():
            (GOLDEN / _file_name(path)).write_bytes(body)
        pytest.skip("golden files written")
    stored = {p.name: p.read_bytes() for p in GOLDEN.iterdir()}
    assert sorted(stored) == sorted(_file_name(path) for path in documents)
    for path, body in documents.items():
        assert body == stored[_file_name(path)], f"{path} differs from the golden bytes"


def test_the_corpus_covers_every_kind_of_document(tmp_path: Path) -> None:
    paths = set(_corpus_documents(tmp_path))
    assert {"/", "/feed.atom", "/feed.rss", "/tags/astronomie.atom", "/tags/astronomie.rss",
            "/tags/vie-du-projet.atom", "/entries/premiere-lumiere",
            "/entries/bilan-automne"} <= paths
