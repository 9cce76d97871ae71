"""Bad input, end to end: every kind of broken seed gets one clear `path:line: message` log line,
is listed by /healthz, and hurts nothing else.

Real servers only: `feedsvc serve` in a subprocess (its stderr is the log) for the all-at-once
run and the permission test, `make_app` on a real socket with the real watcher for the per-case
runs. Each case is a row of CASES; one pure function (`problems`) checks what a run observed.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest

from feedsvc.config import load_config
from feedsvc.serve.app import make_app

from .conftest import (
    SAMPLE_SLUG,
    ServeProcess,
    copy_sample,
    free_port,
    seed,
    wait_until,
    write_seed,
)
from .feedcheck import check_atom, check_rss

MAX_SEED_BYTES = 4096
GOOD_NAME, GOOD_SLUG = "good.txt", "good-one"
GOOD_TEXT = seed(GOOD_SLUG, "Une bonne « nouvelle »", "Texte\u00a0: tout va bien ’ ici.")
AFTER_NAME, AFTER_SLUG = "after.txt", "after-all"
AFTER_TEXT = seed(AFTER_SLUG, "Après tout", "Toujours publié.")
# `2026-03-29 10:00:00,123 WARNING message` (cli._setup_logging)
_LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (.*)$")


def write_site(folder: Path, port: int, rescan_s: int = 300) -> Path:
    """config.toml with a small `max_seed_bytes` and a fast watcher, and an empty seeds/."""
    (folder / "seeds").mkdir()
    (folder / "outside").mkdir()  # files the seeds folder must not publish through links
    path = folder / "config.toml"
    path.write_text(
        '[feed]\ntitle = "Mauvaises entrées"\nlanguage = "fr"\n'
        f'base_url = "http://127.0.0.1:{port}/"\n\n'
        '[paths]\nseeds = "seeds"\nstate = "state/feedsvc.sqlite3"\noutput = "public"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f"[watch]\ndebounce_ms = 20\nrescan_s = {rescan_s}\nmax_seed_bytes = {MAX_SEED_BYTES}\n",
        encoding="utf-8")
    return path


# -- the cases ---------------------------------------------------------------------------------

Maker = Callable[[Path, Path], None]  # (seeds folder, a folder outside it) → the file exists


@dataclass(frozen=True)
class Case:
    name: str  # the file in the seeds folder
    make: Maker
    #: Rejected: at this line, with a message containing every fragment.
    line: int | None = None
    fragments: tuple[str, ...] = ()
    #: Published: this slug, headline and text in the content.
    slug: str | None = None
    title: str | None = None
    body: str | None = None
    #: Published with characters removed: (line, fragment) of its one warning line.
    warning: tuple[int, str] | None = None
    #: Seeds in place before the server starts: (name, text, slug).
    setup: tuple[tuple[str, str, str], ...] = ()

    @property
    def rejected(self) -> bool:
        return self.line is not None


def writes(name: str, data: bytes) -> Maker:
    def make(seeds: Path, _outside: Path) -> None:
        write_seed(seeds, name, data)  # temp file + rename: never seen half-written
    return make


def rejected(name: str, data: bytes | Maker, line: int, *fragments: str,
             setup: tuple[tuple[str, str, str], ...] = ()) -> Case:
    make = writes(name, data) if isinstance(data, bytes) else data
    return Case(name, make, line=line, fragments=fragments, setup=setup)


def published(name: str, data: bytes | Maker, slug: str, title: str, body: str,
              warning: tuple[int, str] | None = None) -> Case:
    make = writes(name, data) if isinstance(data, bytes) else data
    return Case(name, make, slug=slug, title=title, body=body, warning=warning)


def offset(data: bytes, marker: bytes) -> str:
    return f"byte offset {data.index(marker)}"


def make_folder(name: str) -> Maker:
    return lambda seeds, _outside: (seeds / name).mkdir()


def make_fifo(name: str) -> Maker:
    return lambda seeds, _outside: os.mkfifo(seeds / name)


def make_sparse(name: str, size: int) -> Maker:
    """A file of `size` bytes that takes no room: reading it all would take minutes."""
    def make(seeds: Path, _outside: Path) -> None:
        tmp = seeds / f".{name}.tmp"
        with tmp.open("wb") as f:
            f.write(b"huge\nTitre\n\nCorps\n")
            f.truncate(size)
        os.replace(tmp, seeds / name)
    return make


def make_link(name: str, target: str, *, inside: tuple[str, str] | None = None,
              outside: tuple[str, str] | None = None) -> Maker:
    """A symbolic link `name` → `target`; first write `inside` (a non-seed file in the seeds
    folder) and `outside` (a file in the folder beside it), each (name, text)."""
    def make(seeds: Path, outside_folder: Path) -> None:
        if outside is not None:
            (outside_folder / outside[0]).write_text(outside[1], encoding="utf-8")
        if inside is not None:
            (seeds / inside[0]).write_text(inside[1], encoding="utf-8")
        os.symlink(target, seeds / name)
    return make


# A valid seed outside the seeds folder: a link must never publish it.
SECRET = ("secret.txt", seed("outside-secret", "Secret", "Never published."))


def make_link_out(seeds: Path, outside: Path) -> None:
    """An absolute link to a valid seed outside the seeds folder."""
    (outside / SECRET[0]).write_text(SECRET[1], encoding="utf-8")
    os.symlink(outside / SECRET[0], seeds / "link_outside.txt")


def make_chain(seeds: Path, outside: Path) -> None:
    """link_chain.txt → chain.link (in the seeds folder, not a seed) → the secret outside."""
    (outside / SECRET[0]).write_text(SECRET[1], encoding="utf-8")
    os.symlink(outside / SECRET[0], seeds / "chain.link")
    os.symlink("chain.link", seeds / "link_chain.txt")

UTF8_BAD = b"bad-utf8\nTitre\n\nPremier paragraphe.\nSecond \xff ici.\n\nEncore \xfe.\n"
# CR-only line ends are accepted (README), so lines count CRs too. (These two cases fail today:
# parser._decode and parser._parse count only LF when they name the line of a bad byte or NUL.)
UTF8_BAD_CR = b"bad-cr\rTitre\r\rPremier paragraphe.\rSecond \xff ici.\r"
NUL_CR = b"nul-cr\rTitre\r\rCorps\ravec \x00 un NUL\r"
SURROGATE = b"surrogate\nTitre\n\nCorps \xed\xa0\x80 ici\n"  # U+D800 as UTF-8 bytes
CESU = b"cesu\nTitre\n\nSourire \xed\xa0\xbd\xed\xb8\x80\n"  # U+1F600 as two encoded surrogates
UTF16_HEAD = b"\xff\xfe" + "broken16\nTitre\n\nCorps\n".encode("utf-16-le")
UTF16_BROKEN = UTF16_HEAD + b"\x00\xd8" + "x\n".encode("utf-16-le")  # a lone high surrogate
UTF16_ODD = b"\xfe\xff" + "odd16\nTitre\n\nCorps\n".encode("utf-16-be") + b"x"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00"
       b"\x00\x1f\xf3\xffa\x00\x00\x00\x04gAMA")
TOO_BIG = seed("too-big", "Trop long", "x" * MAX_SEED_BYTES).encode()

CASES: list[Case] = [
    # Not UTF-8: the line of the first bad byte, and its offset.
    rejected("bad_utf8.txt", UTF8_BAD, 5, "not valid UTF-8", offset(UTF8_BAD, b"\xff")),
    rejected("bad_utf8_cr.txt", UTF8_BAD_CR, 5, "not valid UTF-8",
             offset(UTF8_BAD_CR, b"\xff")),  # CR line ends are accepted: line 5 here too
    rejected("surrogate.txt", SURROGATE, 4, "not valid UTF-8", offset(SURROGATE, b"\xed")),
    rejected("cesu.txt", CESU, 4, "not valid UTF-8", offset(CESU, b"\xed")),
    # UTF-16 with a BOM is decoded; broken UTF-16 is refused with its line.
    published("utf16le.txt", "\ufeffutf16-le\nTitre « seize » ’ é\n\nCorps\u00a0: UTF-16 LE.\n"
              .encode("utf-16-le"), "utf16-le", "Titre « seize » ’ é", "Corps\u00a0: UTF-16 LE."),
    published("utf16be.txt", "\ufeffutf16-be\r\nTitre grand-boutiste\r\n\r\nCorps\u00a0BE.\r\n"
              .encode("utf-16-be"), "utf16-be", "Titre grand-boutiste", "Corps\u00a0BE."),
    rejected("utf16_broken.txt", UTF16_BROKEN, 5, "not valid UTF-16",
             f"byte offset {len(UTF16_HEAD)}"),
    rejected("utf16_odd.txt", UTF16_ODD, 5, "not valid UTF-16", "byte offset"),
    # Empty, blank, or missing parts.
    rejected("empty.txt", b"", 1, "empty"),
    rejected("whitespace.txt", b" \t\n\n   \r\n\t\t\n", 1, "empty"),
    rejected("bom_only.txt", b"\xef\xbb\xbf\n", 1, "empty"),
    rejected("blank_first.txt", b"\nTitre\n\nCorps\n", 1, "line 1 is blank"),
    rejected("slug_only.txt", b"slug-only\n", 2, "missing headline"),
    rejected("headline_only.txt", "Rien qu’un titre\n".encode(), 2, "no body"),
    rejected("no_body.txt", b"no-body\nUn titre\n\n\n  \n", 3, "no body"),
    rejected("no_blank.txt", "no-blank\nUn titre\nCorps collé\n".encode(), 3,
             "expected a blank line"),
    rejected("long_headline.txt", ("long-headline\n" + "é" * 1001 + "\n\nCorps").encode(), 2,
             "1001 characters", "at most 1000"),
    published("headline_1000.txt", ("headline-1000\n" + "é" * 1000 + "\n\nCorps").encode(),
              "headline-1000", "é" * 1000, "Corps"),
    rejected("long_slug.txt", ("a" * 129 + "\nTitre\n\nCorps").encode(), 1, "129 characters"),
    rejected("«»!.txt", b"Un titre sans slug\n\nCorps", 1, "no slug can be made"),
    # Too big: refused from its size, without reading it.
    rejected("too_big.txt", TOO_BIG, 1, f"{len(TOO_BIG)} bytes", f"at most {MAX_SEED_BYTES}"),
    rejected("huge.txt", make_sparse("huge.txt", 1 << 40), 1, f"{1 << 40} bytes",
             f"at most {MAX_SEED_BYTES}"),
    # Binary.
    rejected("nul.txt", b"nul-seed\nTitre\n\nCorps\navec \x00 un NUL\n", 5, "contains NUL bytes"),
    rejected("nul_cr.txt", NUL_CR, 5, "contains NUL bytes"),
    rejected("nul_utf16.txt", "\ufeffnul16\nTitre\n\nCorps\x00\n".encode("utf-16-le"), 4,
             "contains NUL bytes"),
    rejected("png.txt", PNG, 3, "contains NUL bytes"),
    # Control characters XML 1.0 forbids, and C1 controls: removed with a warning, published.
    published("controls.txt", "controls\nTitre net\n\nCorps\x01 avec\x1b échappements\x0b et"
              "\x0c sauts\x7f.\n".encode(), "controls", "Titre net",
              "Corps avec échappements et sauts.",
              warning=(4, "removed 5 control or non-text character(s) (first: U+0001)")),
    published("c1.txt", "c1-controls\nTitre\x85 avec\x9b C1\uffff\n\nCorps.\n".encode(),
              "c1-controls", "Titre avec C1", "Corps.",
              warning=(2, "removed 3 control or non-text character(s) (first: U+0085)")),
    # Valid spellings that must stay valid.
    published("bom_crlf.txt", b"\xef\xbb\xbfbom-crlf\r\nTitre BOM\r\n\r\nCorps CRLF.\r\n",
              "bom-crlf", "Titre BOM", "Corps CRLF."),
    published("cr_only.txt", b"cr-only\rTitre CR\r\rCorps CR.\r", "cr-only", "Titre CR",
              "Corps CR."),
    # Not a regular file.
    rejected("x.txt", make_folder("x.txt"), 1, "a folder"),
    rejected("f.txt", make_fifo("f.txt"), 1, "not a regular file"),
    # Symbolic links: followed inside the seeds folder, refused when they lead outside.
    published("link_inside.txt", make_link(
        "link_inside.txt", "inside.seed",
        inside=("inside.seed", seed("via-link", "Par un lien", "Lien suivi."))),
        "via-link", "Par un lien", "Lien suivi."),
    rejected("link_to_seed.txt", make_link("link_to_seed.txt", GOOD_NAME), 1,
             f"duplicate slug '{GOOD_SLUG}'", f"{GOOD_NAME} already publishes it"),
    rejected("link_outside.txt", make_link_out, 1, "outside the seeds folder",
             f"/outside/{SECRET[0]}"),
    rejected("link_dotdot.txt", make_link("link_dotdot.txt", f"../outside/{SECRET[0]}",
                                          outside=SECRET), 1, "outside the seeds folder"),
    rejected("link_chain.txt", make_chain, 1, "outside the seeds folder",
             f"/outside/{SECRET[0]}"),
    rejected("link_etc.txt", make_link("link_etc.txt", "/etc/passwd"), 1,
             f"symbolic link to {Path('/etc/passwd').resolve()}", "outside the seeds folder"),
    rejected("link_loop.txt", make_link("link_loop.txt", "link_loop.txt"), 1,
             "symbolic link loop"),
    # Two files, one slug: the first (here: already published) keeps it.
    rejected("dup_b.txt", seed("dup-slug", "Doublon", "Second.").encode(), 1,
             "duplicate slug 'dup-slug'", "dup_a.txt already publishes it",
             setup=(("dup_a.txt", seed("dup-slug", "Original", "Premier."), "dup-slug"),)),
]



# -- what a run observed, and what is wrong with it -------------------------------------------

@dataclass
class Observed:
    log: list[str]  # log messages, without time and level
    health_status: int
    health: dict[str, Any]
    atom: bytes
    rss: bytes
    pages: dict[str, int] = field(default_factory=dict)  # slug → status of /entries/{slug}


def shown(detail: Any) -> str:
    """The text a reader displays for a feedparser text construct (as in test_render)."""
    return html.unescape(detail.value) if detail.type == "text/html" else detail.value


def log_messages(text: str) -> list[str]:
    return [m.group(1) for line in text.splitlines() if (m := _LOG_LINE_RE.match(line))]


def expected_slugs(cases: Sequence[Case], *extra: str) -> set[str]:
    return ({SAMPLE_SLUG, GOOD_SLUG, *extra} | {c.slug for c in cases if c.slug}
            | {slug for c in cases for _, _, slug in c.setup})


def problems(seen: Observed, seeds: Path, cases: Sequence[Case], base_url: str,
             *extra_slugs: str) -> list[str]:
    """Everything that is not as it should be, as readable lines; [] when all is well."""
    found: list[str] = []
    # Some bad seeds are published with a warning (characters removed): then `warnings`.
    healthy = "warnings" if seen.health.get("warnings_count") else "ok"
    if seen.health_status != 200 or seen.health.get("status") != healthy:
        found.append(f"/healthz: {seen.health_status} {seen.health.get('status')}")
    listed = {r["path"]: r for r in seen.health["rejected"]}
    if len(listed) != len(seen.health["rejected"]):
        found.append(f"/healthz lists a path twice: {seen.health['rejected']}")
    expected_rejected = {str(seeds / c.name): c for c in cases if c.rejected}
    for path in sorted(listed.keys() - expected_rejected.keys()):
        found.append(f"unexpectedly rejected: {listed[path]}")

    def lines_of(path: str) -> list[str]:
        return [m for m in seen.log if m.startswith(f"{path}:")]

    for path, case in expected_rejected.items():
        entry = listed.get(path)
        if entry is None:
            found.append(f"{case.name}: not in /healthz rejected; log: {lines_of(path)}")
            continue
        line, message = entry["line"], entry["message"]
        if line != case.line:
            found.append(f"{case.name}: line {line}, expected {case.line} ({message})")
        missing = [f for f in case.fragments if f not in message]
        if missing:
            found.append(f"{case.name}: message {message!r} lacks {missing}")
        if lines_of(path) != [f"{path}:{line}: {message}"]:
            found.append(f"{case.name}: expected one log line '{path}:{line}: {message}', "
                         f"got {lines_of(path)}")

    slugs = expected_slugs(cases, *extra_slugs)
    feeds: dict[str, dict[str, Any]] = {}
    for name, body, check in (("atom", seen.atom, check_atom), ("rss", seen.rss, check_rss)):
        parsed = feedparser.parse(body)
        if parsed.bozo:
            found.append(f"feed.{name}: bozo {parsed.get('bozo_exception')}")
        feeds[name] = {e.link.rsplit("/", 1)[-1]: e for e in parsed.entries}
        if set(feeds[name]) != slugs:
            found.append(f"feed.{name}: entries {sorted(feeds[name])}, expected {sorted(slugs)}")
        found += [f"feed.{name}: {p}" for p in check(body, f"{base_url}feed.{name}")]
    for path, case in ((str(seeds / c.name), c) for c in cases if not c.rejected):
        if path in listed:
            continue  # reported above
        for name, entries in feeds.items():
            got = entries.get(case.slug)
            if got is None:
                continue  # reported above
            if shown(got.title_detail) != case.title:
                found.append(f"{case.name}: {name} title {got.title!r} != {case.title!r}")
            if case.body not in got.content[0].value:
                found.append(f"{case.name}: {name} content {got.content[0].value!r} lacks "
                             f"{case.body!r}")
        lines = lines_of(path)
        if case.warning is None:
            if lines:
                found.append(f"{case.name}: unexpected log lines {lines}")
        elif len(lines) != 1 or not lines[0].startswith(
                f"{path}:{case.warning[0]}: warning: {case.warning[1]}"):
            found.append(f"{case.name}: expected one line '{path}:{case.warning[0]}: warning: "
                         f"{case.warning[1]}', got {lines}")
    for secret in (b"outside-secret", b"Never published", b"root:"):
        if secret in seen.atom or secret in seen.rss:
            found.append(f"a feed shows {secret!r}: a link outside the seeds folder was read")
    for slug, status in sorted(seen.pages.items()):
        # "vanish" may have been published for a moment: then its page is Gone (RFC 6721).
        if status not in ((200,) if slug in slugs else (404, 410) if slug == "vanish" else (404,)):
            found.append(f"/entries/{slug}: {status}")
    if seen.health["entries_published"] != len(slugs):
        found.append(f"/healthz entries_published {seen.health['entries_published']}, "
                     f"expected {len(slugs)}")
    return found


def settled(health: dict[str, Any], atom: bytes, seeds: Path, cases: Sequence[Case],
            *extra_slugs: str) -> bool:
    """Every case is where it should end up: listed as rejected, or published."""
    listed = {r["path"] for r in health["rejected"]}
    return all(str(seeds / c.name) in listed for c in cases if c.rejected) and all(
        shows(atom, slug) for slug in expected_slugs(cases, *extra_slugs))


def shows(atom: bytes, slug: str) -> bool:
    """Whether an Atom document has the entry `slug` (its link ends the href)."""
    return f'/entries/{slug}"'.encode() in atom


def setup_seeds(seeds: Path, cases: Sequence[Case]) -> None:
    """The sample and one more good seed, plus what the cases need beforehand."""
    copy_sample(seeds)
    write_seed(seeds, GOOD_NAME, GOOD_TEXT)
    for case in cases:
        for name, text, _ in case.setup:
            write_seed(seeds, name, text)


# -- all at once, on the real CLI -------------------------------------------------------------

def _serve_get_json(server: ServeProcess, path: str) -> tuple[int, dict[str, Any]]:
    status, _, body = server.get(path)
    return status, json.loads(body)


def observe(server: ServeProcess, slugs: set[str]) -> Observed:
    status, health = _serve_get_json(server, "/healthz")
    return Observed(log=log_messages(server.log()), health_status=status, health=health,
                    atom=server.get("/feed.atom")[2], rss=server.get("/feed.rss")[2],
                    pages={slug: server.get(f"/entries/{slug}")[0] for slug in slugs})


def _vanish(seeds: Path, rounds: int) -> None:
    """Seeds that appear and vanish at once: events arrive for files no longer there, or gone
    between the stat and the read."""
    for i in range(rounds):
        write_seed(seeds, "vanish.txt", seed("vanish", "Éphémère", f"Ici puis parti ({i})."))
        if i % 3:
            time.sleep(0.001 * (i % 7))
        (seeds / "vanish.txt").unlink()


def test_every_bad_seed_at_once(tmp_path: Path, serve) -> None:
    config_path = write_site(tmp_path, free_port(), rescan_s=1)  # rescans keep re-reading them
    config = load_config(config_path)
    seeds, base_url = config.paths.seeds, config.feed.base_url
    setup_seeds(seeds, CASES)
    server = serve(config_path)
    wait_until(lambda: shows(server.get("/feed.atom")[2], "dup-slug"))

    for case in CASES:
        case.make(seeds, tmp_path / "outside")
    wait_until(lambda: settled(_serve_get_json(server, "/healthz")[1],
                               server.get("/feed.atom")[2], seeds, CASES), timeout=20)
    # The FIFO (and everything else) blocked nothing: a seed dropped now is published.
    write_seed(seeds, AFTER_NAME, AFTER_TEXT)
    wait_until(lambda: shows(server.get("/feed.atom")[2], AFTER_SLUG))
    _vanish(seeds, 300)
    write_seed(seeds, "sentinel.txt", seed("sentinel", "Dernier", "Après les fantômes."))
    wait_until(lambda: shows(server.get("/feed.atom")[2], "sentinel"))
    time.sleep(2.5)  # a few periodic rescans: still one line per bad seed
    wait_until(lambda: not shows(server.get("/feed.atom")[2], "vanish"))

    slugs = expected_slugs(CASES, AFTER_SLUG, "sentinel")
    seen = observe(server, slugs | {"vanish", "outside-secret"})
    found = problems(seen, seeds, CASES, base_url, AFTER_SLUG, "sentinel")
    text = server.log()
    vanish_lines = [m for m in seen.log if "vanish.txt" in m and not m.startswith(
        ("published vanish from", "updated vanish from"))]
    if vanish_lines:
        found.append(f"vanishing seed logged: {vanish_lines[:5]}")
    if "Traceback" in text:
        found.append("Traceback in the log")
    errors = [line for line in text.splitlines() if " ERROR " in line]
    if errors:
        found.append(f"errors logged: {errors}")
    assert server.process.poll() is None, "serve died"
    assert found == [], "\n".join(found) + "\n--- log ---\n" + text


# -- one case at a time, in process (caplog is the log) ---------------------------------------

class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.read()

    async def health(self) -> tuple[int, dict[str, Any]]:
        status, body = await self.get("/healthz")
        return status, json.loads(body)

    async def atom(self) -> bytes:
        return (await self.get("/feed.atom"))[1]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> bool:
    """Poll until truthy; False on timeout (the checks that follow say what is wrong)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_one_bad_seed(case: Case, tmp_path: Path, aiohttp_server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="feedsvc")
    config = load_config(write_site(tmp_path, free_port()))
    seeds, base_url = config.paths.seeds, config.feed.base_url
    setup_seeds(seeds, [case])
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession() as session:
        client = Client(session, f"http://127.0.0.1:{server.port}")

        async def ready() -> bool:  # the seeds set up beforehand are published
            return settled((await client.health())[1], await client.atom(), seeds, [],
                           *(slug for _, _, slug in case.setup))

        assert await eventually(ready)
        case.make(seeds, tmp_path / "outside")

        async def done() -> bool:
            return settled((await client.health())[1], await client.atom(), seeds, [case])

        await eventually(done)
        # Whatever this case did, the pipeline still applies changes.
        write_seed(seeds, AFTER_NAME, AFTER_TEXT)

        async def after() -> bool:
            return shows(await client.atom(), AFTER_SLUG)

        assert await eventually(after), "changes after this seed are not applied"
        await asyncio.sleep(0.2)  # room for a wrong second log line
        status, health = await client.health()
        slugs = expected_slugs([case], AFTER_SLUG)
        seen = Observed(
            log=[r.getMessage() for r in caplog.records if r.name == "feedsvc"],
            health_status=status, health=health,
            atom=await client.atom(), rss=(await client.get("/feed.rss"))[1],
            pages={slug: (await client.get(f"/entries/{slug}"))[0]
                   for slug in slugs | {"outside-secret"}})
    found = problems(seen, seeds, [case], base_url, AFTER_SLUG)
    found += [f"logged with a traceback: {r.getMessage()}" for r in caplog.records
              if r.exc_info]
    assert found == [], "\n".join(found)


async def test_vanishing_seeds_are_not_errors(tmp_path: Path, aiohttp_server, caplog) -> None:
    caplog.set_level(logging.INFO, logger="feedsvc")
    config = load_config(write_site(tmp_path, free_port()))
    seeds = config.paths.seeds
    setup_seeds(seeds, [])
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession() as session:
        client = Client(session, f"http://127.0.0.1:{server.port}")
        assert await eventually(lambda: _has(client, GOOD_SLUG))
        # In a thread, so the server keeps running while files come and go.
        await asyncio.to_thread(_vanish, seeds, 300)
        write_seed(seeds, AFTER_NAME, AFTER_TEXT)
        assert await eventually(lambda: _has(client, AFTER_SLUG))
        assert await eventually(lambda: _lacks(client, "vanish"))
        status, health = await client.health()
    assert status == 200 and health["rejected"] == [], health
    noisy = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == []


async def _has(client: Client, slug: str) -> bool:
    return shows(await client.atom(), slug)


async def _lacks(client: Client, slug: str) -> bool:
    return not await _has(client, slug)


# -- permission denied: reported, retried on the next change -----------------------------------

DROP_DAC = ["--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search"]


def _unprivileged_prefix(tmp_path: Path) -> list[str]:
    """A command prefix under which file modes apply: none when not root; as root, setpriv
    without the capabilities that override them. Skips when that cannot be had."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: chmod 000 would not stop reads")
    probe = tmp_path / "probe"
    probe.write_text("secret")
    probe.chmod(0)
    try:
        result = subprocess.run([setpriv, *DROP_DAC, "cat", str(probe)], capture_output=True,
                                timeout=10)
    finally:
        probe.unlink()
    if result.returncode == 0:
        pytest.skip("setpriv could not drop CAP_DAC_OVERRIDE here: chmod 000 would not stop "
                    f"reads as root ({result.stderr.decode(errors='replace').strip()})")
    return [setpriv, *DROP_DAC]


class PrefixedServe(ServeProcess):
    """`python -m feedsvc serve` started through a command prefix (setpriv)."""

    def __init__(self, config_path: Path, prefix: list[str]) -> None:
        self.config = load_config(config_path)
        self.url = f"http://127.0.0.1:{self.config.server.port}"
        self.stderr_path = config_path.parent / "serve.log"
        self._stderr = self.stderr_path.open("ab")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "feedsvc", "serve", "--config", str(config_path)],
            cwd=config_path.parent, stdout=subprocess.DEVNULL, stderr=self._stderr)
        wait_until(self._ready, timeout=30)


@pytest.fixture
def serve_through() -> Iterator[Callable[[Path, list[str]], ServeProcess]]:
    started: list[ServeProcess] = []

    def start(config_path: Path, prefix: list[str]) -> ServeProcess:
        started.append(PrefixedServe(config_path, prefix))
        return started[-1]

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


def _locked(seeds: Path, name: str, text: str) -> Path:
    """A seed that appears already unreadable (mode 000 set before the rename)."""
    tmp = seeds / f".{name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0)
    os.replace(tmp, seeds / name)
    return seeds / name


def test_permission_denied_is_reported_and_retried(tmp_path: Path, serve_through) -> None:
    prefix = _unprivileged_prefix(tmp_path)
    config_path = write_site(tmp_path, free_port())
    config = load_config(config_path)
    seeds, base_url = config.paths.seeds, config.feed.base_url
    setup_seeds(seeds, [])
    at_start = _locked(seeds, "locked_start.txt", seed("locked-start", "Verrou", "Au départ."))
    server = serve_through(config_path, prefix)

    def health() -> dict[str, Any]:
        return _serve_get_json(server, "/healthz")[1]

    def rejected_paths() -> dict[str, tuple[int, str]]:
        return {r["path"]: (r["line"], r["message"]) for r in health()["rejected"]}

    live = _locked(seeds, "locked_live.txt", seed("locked-live", "Verrou", "En route."))
    # A published seed that becomes unreadable keeps its last good version published.
    good = seeds / GOOD_NAME
    good.chmod(0)
    os.utime(good)
    wait_until(lambda: len(rejected_paths()) == 3)
    rejected = rejected_paths()
    for path in (at_start, live, good):
        assert rejected[str(path)] == (1, "permission denied"), rejected
    messages = log_messages(server.log())
    for path in (at_start, live):
        assert [m for m in messages if m.startswith(f"{path}:")] == [
            f"{path}:1: permission denied"]
    assert [m for m in messages if m.startswith(f"{good}:")] == [
        f"{good}:1: permission denied (still publishing its last good version of {GOOD_SLUG})"]
    atom = server.get("/feed.atom")[2]
    assert b"locked-" not in atom and shows(atom, GOOD_SLUG)

    # Readable again, and touched: retried and published.
    for path in (at_start, live, good):
        path.chmod(0o644)
        os.utime(path)
    wait_until(lambda: health()["rejected"] == [] and all(
        shows(server.get("/feed.atom")[2], slug) for slug in ("locked-start", "locked-live")))
    seen = observe(server, expected_slugs([], "locked-start", "locked-live"))
    assert problems(seen, seeds, [], base_url, "locked-start", "locked-live") == []
    assert "Traceback" not in server.log()
