"""Issue 5, end to end through the real parts: front matter dates, scheduled posts, drafts,
Markdown, tags and their documents, per-entry authors, `feedsvc new`. The publisher runs on a
real folder and a real SQLite file with a clock the test moves; the server tests run
`feedsvc serve` in a subprocess and read it with feedparser."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from lxml import etree, html

from feedsvc.config import Config, load_config
from feedsvc.errors import Rejection
from feedsvc.ingest.parser import content_hash, parse_seed
from feedsvc.model import Entry
from feedsvc.publish.formats.atom import ATOM as ATOM_FORMAT
from feedsvc.publish.ids import entry_id
from feedsvc.publish.publisher import Publisher

from .conftest import ServeProcess, free_port, run_cli, wait_until, write_config, write_seed
from .feedcheck import check_atom, check_rss

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
XML = "{http://www.w3.org/XML/1998/namespace}"


class Clock:
    """The publisher's clock, moved by the test."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def front(text: str, **keys: str) -> str:
    """A seed with a front matter: `keys` as YAML lines, then `text`."""
    block = "\n".join(f"{key}: {value}" for key, value in keys.items())
    return f"---\n{block}\n---\n\n{text}"


@pytest.fixture
def paris(tmp_path: Path) -> Config:
    write_config(tmp_path, port=free_port(), timezone="Europe/Paris",
                 base_url="https://exemple.fr/blog/")
    return load_config(tmp_path / "config.toml")


@pytest.fixture
def publisher(paris: Config) -> Callable[..., Publisher]:
    opened: list[Publisher] = []

    def open_(clock: Clock | None = None) -> Publisher:
        p = Publisher.open(paris, clock or Clock())
        opened.append(p)
        return p

    yield open_
    for p in opened:
        p.close()


def feed(publisher: Publisher, path: str = "/feed.atom") -> feedparser.FeedParserDict:
    document = publisher.snapshot.documents[path]
    parsed = feedparser.parse(document.body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def slugs(publisher: Publisher, path: str = "/feed.atom") -> list[str]:
    return [e.link.rsplit("/", 1)[-1] for e in feed(publisher, path).entries]


# -- dates -----------------------------------------------------------------------------------

def test_an_explicit_date_is_published_and_a_changed_one_is_honoured(paris, publisher) -> None:
    seeds = paris.paths.seeds
    path = write_seed(seeds, "a.txt", front("a\nTitre\n\nCorps", date="2026-11-20 08:30"))
    write_seed(seeds, "b.txt", "b\nAutre\n\nCorps")
    p = publisher()
    p.scan()
    entry = next(e for e in feed(p).entries if e.title == "Titre")
    # 08:30 in Paris in November is 07:30 UTC; `updated` is not before it.
    assert entry.published == "2026-11-20T07:30:00+00:00"
    assert entry.updated == "2026-11-20T07:30:00+00:00"
    assert slugs(p) == ["b", "a"]  # b was first seen now: newer
    first_id = entry.id
    write_seed(seeds, "a.txt", front("a\nTitre\n\nCorps", date="mardi 24 novembre 2026 à 9h30"))
    p.update([path])
    entry = next(e for e in feed(p).entries if e.title == "Titre")
    assert entry.published == "2026-11-24T08:30:00+00:00"
    assert entry.id == first_id == entry_id(p.info.id, "a")
    assert slugs(p) == ["b", "a"]
    # Moved before b's first sight and after it: the order follows.
    write_seed(seeds, "a.txt", front("a\nTitre\n\nCorps", date="2026-11-24T08:59:00+00:00"))
    p.update([path])
    assert slugs(p) == ["b", "a"]
    write_seed(seeds, "a.txt", front("a\nTitre\n\nCorps", date="2026-11-24 10:00"))  # 09:00Z
    p.update([path])
    assert slugs(p) == ["a", "b"]


def test_an_explicit_updated_replaces_the_computed_one(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "a.txt", front("Corps", title="Titre", slug="a", date="2026-01-05",
                                     updated="2026-02-01 12:00"))
    p = publisher()
    p.scan()
    (entry,) = feed(p).entries
    assert (entry.published, entry.updated) == ("2026-01-04T23:00:00+00:00",
                                                 "2026-02-01T11:00:00+00:00")


def test_a_bad_date_is_a_seed_error_with_its_line_never_now(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "a.txt", "---\ntitle: Titre\ndate: 31 février 2026\n---\n\nCorps")
    p = publisher()
    snapshot = p.scan()
    assert snapshot.published_count == 0
    (error,) = snapshot.rejected
    assert (Path(error.path).name, error.line) == ("a.txt", 3)


# -- scheduled posts and drafts -------------------------------------------------------------

def test_a_scheduled_post_appears_at_its_time(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "old.txt", "old\nAncien\n\nCorps")
    write_seed(seeds, "later.txt", front("later\nPlus tard\n\nCorps",
                                         date="2026-11-24 10:30", tags="Agenda"))
    clock = Clock()
    p = publisher(clock)
    snapshot = p.scan()
    assert slugs(p) == ["old"]
    assert snapshot.published_count == 1
    assert snapshot.scheduled == (("later", datetime(2026, 11, 24, 9, 30, tzinfo=UTC)),)
    assert p.next_due() == datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert "/entries/later" not in snapshot.documents
    assert "/tags/agenda.atom" not in snapshot.documents  # not before its time, anywhere
    assert p.store.load_page("later", int(clock.now.timestamp())) is None
    clock.now = datetime(2026, 11, 24, 9, 29, 59, tzinfo=UTC)
    assert p.update(()) is snapshot  # nothing due yet: nothing rendered
    clock.now = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    snapshot = p.update(())
    assert slugs(p) == ["later", "old"]
    assert snapshot.scheduled == () and p.next_due() is None and snapshot.published_count == 2
    assert slugs(p, "/tags/agenda.atom") == ["later"]


def test_drafts_are_never_published_and_counted(paris, publisher) -> None:
    seeds = paris.paths.seeds
    draft = write_seed(seeds, "d.txt", front("", title="Brouillon", slug="d", draft="true"))
    live = write_seed(seeds, "e.txt", front("Corps", title="En ligne", slug="e"))
    p = publisher()
    snapshot = p.scan()
    assert slugs(p) == ["e"] and snapshot.draft_count == 1 and snapshot.rejected == ()
    # Published, then made a draft: it goes away; drafted off again: back, same id.
    write_seed(seeds, "e.txt", front("Corps", title="En ligne", slug="e", draft="true"))
    snapshot = p.update([live])
    assert slugs(p) == [] and snapshot.draft_count == 2
    write_seed(seeds, "e.txt", front("Corps", title="En ligne", slug="e"))
    write_seed(seeds, "d.txt", front("Écrit.", title="Brouillon", slug="d"))
    snapshot = p.update([live, draft])
    assert sorted(slugs(p)) == ["d", "e"] and snapshot.draft_count == 0


# -- Markdown --------------------------------------------------------------------------------

HOSTILE = """---
title: Piège
---

Texte **gras** avec [un lien](autre/page) et ![image](img/a.png).

<script>alert(1)</script>
<img src="x" onerror="alert(2)">
[clic](javascript:alert(3))
<a href="JaVaScRiPt:alert(4)">a</a>
<iframe src="https://evil.example/"></iframe>
<p onclick="alert(5)">para</p>"""


def test_a_hostile_markdown_seed_comes_out_clean(paris, publisher) -> None:
    write_seed(paris.paths.seeds, "piege.md", HOSTILE)
    p = publisher()
    p.scan()
    (entry,) = feed(p).entries
    assert entry.title == "Piège"
    for path in ("/feed.atom", "/feed.rss", "/entries/piege"):
        body = p.snapshot.documents[path].body.decode()
        if path != "/entries/piege":
            content = (feedparser.parse(body).entries[0].content[0].value)
        else:
            content = body
        tree = html.fromstring(f"<div>{content}</div>")
        assert not tree.xpath("//script|//iframe"), path
        for element in tree.iter():
            for name, value in element.attrib.items():
                assert not name.lower().startswith("on"), (path, name)
                assert "javascript:" not in value.lower(), (path, value)
        links = tree.xpath("//a/@href") + tree.xpath("//img/@src")
        assert "https://exemple.fr/blog/autre/page" in links, path
        assert "https://exemple.fr/blog/img/a.png" in links, path
    assert entry.summary == "Texte gras avec un lien et ."  # plain text, no markup
    assert check_atom(p.snapshot.documents["/feed.atom"].body, ATOM_FORMAT.url(p.info), NOW) == []


# -- tags and authors ------------------------------------------------------------------------

def test_tags_get_categories_and_their_own_documents(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "a.txt", front("Corps A", title="A", slug="a",
                                     tags="Économie, Logiciel libre", date="2026-11-20"))
    write_seed(seeds, "b.txt", front("Corps B", title="B", slug="b", tags="[économie]",
                                     date="2026-11-21",
                                     author="{name: Zoé Martin, email: zoe@exemple.fr}"))
    c = write_seed(seeds, "c.txt", front("Corps C", title="C", slug="c", tags="Logiciel libre"))
    p = publisher()
    p.scan()
    entries = {e.title: e for e in feed(p).entries}
    assert [t.term for t in entries["A"].tags] == ["economie", "logiciel-libre"]
    assert [t.label for t in entries["A"].tags] == ["Économie", "Logiciel libre"]
    assert entries["B"].author_detail == {"name": "Zoé Martin", "email": "zoe@exemple.fr"}
    assert entries["A"].author == "Test feed"  # the feed's author otherwise
    rss = feedparser.parse(p.snapshot.documents["/feed.rss"].body)
    assert [t.term for t in rss.entries[-1].tags] == ["Économie", "Logiciel libre"]
    documents = p.snapshot.documents
    assert slugs(p, "/tags/economie.atom") == ["b", "a"]
    assert slugs(p, "/tags/logiciel-libre.rss") == ["c", "a"]
    economie = feed(p, "/tags/economie.atom").feed
    assert economie.title == "Test feed — économie"  # the newest entry's label
    assert economie.links[0].href == "https://exemple.fr/blog/tags/economie.atom"
    assert economie.id != feed(p).feed.id
    for path in ("/tags/economie.atom", "/tags/logiciel-libre.atom"):
        assert check_atom(documents[path].body, f"https://exemple.fr/blog{path}", NOW) == []
    for path in ("/tags/economie.rss", "/feed.rss"):
        assert check_rss(documents[path].body, f"https://exemple.fr/blog{path}", NOW) == []
    assert documents["/tags/economie.atom"].etag != documents["/feed.atom"].etag
    # A tag's documents change only when its entries do; a tag with none left keeps, for
    # tombstone_days, a feed without entries carrying its deleted entries' tombstones.
    etag = documents["/tags/economie.atom"].etag
    write_seed(seeds, "c.txt", front("Corps C", title="C", slug="c", tags="Autre"))
    documents = p.update([c]).documents
    assert documents["/tags/economie.atom"].etag == etag
    assert slugs(p, "/tags/logiciel-libre.atom") == ["a"]
    assert slugs(p, "/tags/autre.atom") == ["c"]
    (seeds / "a.txt").unlink()
    documents = p.update([seeds / "a.txt"]).documents
    assert slugs(p, "/tags/logiciel-libre.atom") == []
    assert b'ref="' + entry_id(p.info.id, "a").encode() in documents[
        "/tags/logiciel-libre.atom"].body
    assert slugs(p, "/tags/economie.atom") == ["b"]


def test_the_last_good_version_of_an_authored_seed_survives_a_restart(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "a.md", front("Un *texte*.", title="Titre", slug="a", tags="Tag"))
    p = publisher()
    p.scan()
    p.close()
    write_seed(seeds, "a.md", "---\ntitle: [cassé\n---\n")
    again = publisher()
    snapshot = again.scan()
    assert len(snapshot.rejected) == 1
    (entry,) = feed(again).entries
    assert entry.content[0].value == "<p>Un <em>texte</em>.</p>"
    assert slugs(again, "/tags/tag.atom") == ["a"]


# -- the real server -------------------------------------------------------------------------

def start(tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> ServeProcess:
    if not (tmp_path / "config.toml").exists():
        write_config(tmp_path, port=free_port(), timezone="Europe/Paris")
    return serve(tmp_path / "config.toml")


def entries_of(server: ServeProcess, path: str = "/feed.atom") -> list[str]:
    status, _, body = server.get(path)
    if status != 200:
        return []
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0
    return [e.title for e in parsed.entries]


def test_a_post_scheduled_two_seconds_ahead_appears_on_time(tmp_path, serve) -> None:
    server = start(tmp_path, serve)
    when = datetime.now(UTC) + timedelta(seconds=2)
    # Dates are whole seconds: a sub-second time is due at the next one, never before.
    due = when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)
    write_seed(tmp_path / "seeds", "bientot.txt",
               front("Corps", title="Bientôt", slug="bientot", date=when.isoformat()))
    wait_until(lambda: server.get("/healthz")[2].count(b'"bientot"'), timeout=10)
    assert entries_of(server) == []
    assert server.get("/entries/bientot")[0] == 404
    wait_until(lambda: entries_of(server) == ["Bientôt"], timeout=15, interval=0.01)
    late = datetime.now(UTC) - due
    print(f"\nscheduled entry served {late.total_seconds() * 1000:.0f} ms after its time")
    assert timedelta(0) < late < timedelta(seconds=1)  # a timer: not early, nor a rescan
    assert server.get("/entries/bientot")[0] == 200
    assert "published bientot (scheduled)" in server.log()
    assert server.stop() == 0


def test_a_post_whose_time_passed_while_stopped_appears_at_start(tmp_path, serve) -> None:
    server = start(tmp_path, serve)
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    write_seed(tmp_path / "seeds", "pendant.txt",
               front("Corps", title="Pendant l’arrêt", slug="pendant", date=when.isoformat()))
    wait_until(lambda: b'"pendant"' in server.get("/healthz")[2], timeout=10)
    assert server.stop() == 0
    while datetime.now(UTC) < when + timedelta(seconds=0.5):
        time.sleep(0.1)
    again = start(tmp_path, serve)
    assert entries_of(again) == ["Pendant l’arrêt"]
    assert again.stop() == 0


def test_tag_documents_over_http(tmp_path, serve) -> None:
    server = start(tmp_path, serve)
    write_seed(tmp_path / "seeds", "a.md",
               front("# Titre\n\nCorps *Markdown*.", tags="Vie du projet"))
    wait_until(lambda: server.get("/tags/vie-du-projet.atom")[0] == 200, timeout=10)
    for path in ("/tags/vie-du-projet.atom", "/tags/vie-du-projet.rss"):
        # Compressed on the compressor threads after the document is served (identity until
        # then: a busy machine takes a moment).
        wait_until(lambda path=path: server.get(path, {"Accept-Encoding": "gzip"})[1].get(
            "Content-Encoding") == "gzip", timeout=10)
        status, headers, _ = server.get(path, {"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert server.get(path, {"If-None-Match": headers["ETag"]})[0] == 304
        assert entries_of(server, path) == ["Titre"]
    health = server.get("/healthz")[2]
    assert b'"drafts": 0' in health
    assert server.get("/tags/nothing.atom")[0] == 404
    assert server.stop() == 0


# -- feedsvc new -----------------------------------------------------------------------------

def test_new_writes_a_draft_seed_and_never_overwrites(tmp_path) -> None:
    write_config(tmp_path, port=free_port(), timezone="Europe/Paris")
    first = run_cli("new", "Titre de l’article", "--tags", "Économie, Vie", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == tmp_path / "seeds" / "titre-de-larticle.txt"
    second = run_cli("new", "Titre de l’article", "--date", "mardi 24 novembre 2026 à 8h30",
                     cwd=tmp_path)
    assert Path(second.stdout.strip()) == tmp_path / "seeds" / "titre-de-larticle-2.txt"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\ntitle: Titre de l’article\nslug: titre-de-larticle\n")
    assert "tags:\n- Économie\n- Vie\ndraft: true\n---\n" in text
    # The service reads what `new` wrote: a draft, counted, nothing rejected.
    check = run_cli("check", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert "2 seeds: 0 publishable now, 0 scheduled, 2 drafts, 0 rejected" in check.stdout
    bad = run_cli("new", "Autre", "--date", "le 31 février", cwd=tmp_path)
    assert bad.returncode == 2 and "--date" in bad.stderr  # a usage error
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == [
        "titre-de-larticle-2.txt", "titre-de-larticle.txt"]


def test_new_opens_the_editor_with_edit(tmp_path) -> None:
    write_config(tmp_path, port=free_port())
    editor = tmp_path / "editor.py"
    editor.write_text("import sys, pathlib\n"
                      "p = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text().replace('draft: true\\n', '') + 'Écrit.')\n")
    env = {**os.environ, "EDITOR": f"{sys.executable} {editor}"}
    env.pop("VISUAL", None)
    result = run_cli("new", "Écrit à la main", "--edit", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    check = run_cli("check", cwd=tmp_path)
    assert "1 seeds: 1 publishable now, 0 scheduled, 0 drafts, 0 rejected" in check.stdout


def test_dates_in_paris_across_the_dst_change(paris, publisher) -> None:
    seeds = paris.paths.seeds
    write_seed(seeds, "hiver.txt", front("Corps", title="Hiver", slug="hiver",
                                         date="2026-03-28 12:00"))
    write_seed(seeds, "ete.txt", front("Corps", title="Été", slug="ete",
                                       date="2026-03-30 12:00"))
    p = publisher()
    p.scan()
    published = {e.title: e.published for e in feed(p).entries}
    assert published == {"Hiver": "2026-03-28T11:00:00+00:00", "Été": "2026-03-30T10:00:00+00:00"}



# -- the parser: what follows a front matter -------------------------------------------------

@pytest.mark.parametrize(("name", "text", "slug", "title", "paragraphs"), [
    ("f.txt", "---\ntitle: Titre\nslug: s\n---\n\nCorps", "s", "Titre", ("Corps",)),
    ("f.txt", "---\ntitle: Titre\nslug: s\n---\ns\nTitre\n\nCorps", "s", "Titre", ("Corps",)),
    ("f.txt", "---\ntitle: Titre\n---\nligne-un\n\nCorps", "ligne-un", "Titre", ("Corps",)),
    ("Mon fichier.txt", "---\ntitle: Titre\n---\n\nCorps d’abord.", "mon-fichier", "Titre",
     ("Corps d’abord.",)),
    ("f.txt", "---\ndate: 2026-11-24\n---\nclassique\nTitre\n\nCorps", "classique", "Titre",
     ("Corps",)),
    ("f.md", "# Un *titre*\n\nCorps", "f", "Un *titre*", ("Corps",)),
    ("f.md", "---\ntitle: T\n---\n# T\n\nCorps", "f", "T", ("Corps",)),
    ("f.txt", "---\ntitle: T\nauthor:\n  name: Zoé\n  email: z@exemple.fr\nsummary: |\n"
              "  Deux\n  lignes.\n---\n\nCorps", "f", "T", ("Corps",)),
], ids=["slug-and-title", "repeated-lines", "title-only-slug-line", "slug-from-file-name",
        "date-only-classic-header", "markdown-heading", "markdown-heading-repeated",
        "nested-yaml"])
def test_what_follows_a_front_matter(name: str, text: str, slug: str, title: str,
                                     paragraphs: tuple[str, ...]) -> None:
    entry = parse_seed(name, text.encode())
    assert isinstance(entry, Entry), entry
    assert (entry.slug, entry.title, entry.paragraphs) == (slug, title, paragraphs)
    assert entry.seed_text == text  # what the state keeps to parse it again


def test_nested_front_matter_values_are_read() -> None:
    entry = parse_seed("f.txt", b"---\ntitle: T\nauthor:\n  name: Zo\xc3\xa9\n"
                                b"  email: z@exemple.fr\nsummary: |\n  Deux\n  lignes.\n---\n\nC")
    assert isinstance(entry, Entry)
    assert (entry.author_name, entry.author_email, entry.summary) == (
        "Zoé", "z@exemple.fr", "Deux lignes.")


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("---\ntitle: T\n", 1, "---"),
    ("---\ntitle: T\nslug: Pas Un Slug\n---\n\nCorps", 3, "slug"),
    ("---\ndate: 2026-11-24\n---\n\n", 4, "headline"),
    ("---\ntitle: T\n---\n", 4, "no body"),
    ("---\ntitle: T\ntags: [a\n---\n\nCorps", 3, ""),
    ("---\ntitle: T\n---\nslug\nTitre\nCorps", 5, "blank line"),
], ids=["never-closed", "bad-slug", "no-headline", "no-body", "yaml-syntax", "no-blank-line"])
def test_front_matter_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    error = parse_seed("f.txt", text.encode())
    assert isinstance(error, Rejection), error
    assert error.line == line, error
    assert fragment in error.message


def test_a_draft_may_have_no_body_yet() -> None:
    entry = parse_seed("f.txt", b"---\ntitle: T\ndraft: true\n---\n")
    assert isinstance(entry, Entry) and entry.draft and entry.paragraphs == ()


def test_plain_seeds_hash_as_before_and_front_matter_counts() -> None:
    plain = parse_seed("f.txt", b"s\nTitre\n\nCorps")
    dated = parse_seed("f.txt", b"---\ndate: 2026-11-24\n---\ns\nTitre\n\nCorps")
    tagged = parse_seed("f.txt", b"---\ntags: a\n---\ns\nTitre\n\nCorps")
    assert isinstance(plain, Entry) and isinstance(dated, Entry) and isinstance(tagged, Entry)
    assert plain.content_hash == content_hash("Titre", ("Corps",))  # unchanged by issue 5
    assert dated.content_hash == plain.content_hash  # a date alone is no update
    assert tagged.content_hash != plain.content_hash  # a tag shows in the documents


def test_only_scheduled_entries_are_said_to_appear(paris, publisher, caplog) -> None:
    clock = Clock()
    p = publisher(clock)
    p.scan()
    caplog.set_level(logging.INFO, logger="feedsvc")
    clock.now = NOW + timedelta(seconds=5)
    path = write_seed(paris.paths.seeds, "new.txt", "new\nNouveau\n\nCorps",
                      mtime=(NOW + timedelta(seconds=2)).timestamp())
    p.update([path])
    assert "published new from" in caplog.text
    assert "(scheduled)" not in caplog.text


def test_sub_second_dates_round_up_so_nothing_appears_early() -> None:
    entry = parse_seed("f.txt", b"---\ntitle: T\ndate: 2026-11-24T08:30:00.5Z\n---\n\nC")
    assert isinstance(entry, Entry)
    assert entry.date == int(datetime(2026, 11, 24, 8, 30, 1, tzinfo=UTC).timestamp())


def test_an_entry_in_another_language_says_so_in_atom(paris, publisher) -> None:
    write_seed(paris.paths.seeds, "en.txt", front("Body", title="In English", slug="en",
                                                  lang="en-GB"))
    write_seed(paris.paths.seeds, "fr.txt", front("Corps", title="En français", slug="fr"))
    p = publisher()
    p.scan()
    root = etree.fromstring(p.snapshot.documents["/feed.atom"].body)
    lang = {entry.findtext(f"{ATOM}title"): entry.get(f"{XML}lang")
            for entry in root.iter(f"{ATOM}entry")}
    assert lang == {"In English": "en-GB", "En français": None}  # the feed's own: not repeated


def test_build_writes_the_tag_feeds_beside_the_feeds(tmp_path) -> None:
    write_config(tmp_path, port=free_port())
    write_seed(tmp_path / "seeds", "a.txt", front("Corps", title="A", slug="a", tags="Vie"))
    result = run_cli("build", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "public" / "tags"
    # The tag's feeds, and (the site) the list of tags and the tag's page.
    assert sorted(p.name for p in out.iterdir()) == [
        "index.html", "index.html.br", "index.html.gz",
        "vie", "vie.atom", "vie.atom.br", "vie.atom.gz",
        "vie.json", "vie.json.br", "vie.json.gz", "vie.rss", "vie.rss.br", "vie.rss.gz"]
    assert (out / "vie" / "index.html").is_file()  # route /tags/vie
    assert [e.title for e in feedparser.parse((out / "vie.atom").read_bytes()).entries] == ["A"]
