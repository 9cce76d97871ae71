"""An offline stand-in for the W3C Feed Validation Service, for the rules our documents can break.

The service cannot be reached from here, so this mirrors the conditions of its errors and
warnings (from the w3c/feedvalidator source) that apply to our Atom and RSS shape, plus the
RFC 4287 RELAX NG schema. `check_atom` / `check_rss` return a list of problems; [] is valid.
"""

from __future__ import annotations

import html.entities
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import html5lib
from lxml import etree

ATOM = "http://www.w3.org/2005/Atom"
A = f"{{{ATOM}}}"
CONTENT_ENCODED = "{http://purl.org/rss/1.0/modules/content/}encoded"
DC_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
#: RFC 5005 (feed paging and archiving): fh:archive, fh:complete.
FH = "http://purl.org/syndication/history/1.0"
TOMBSTONES = "http://purl.org/atompub/tombstones/1.0"
_IRI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
_SCHEMA = etree.RelaxNG(file=str(Path(__file__).parent / "data" / "atom.rng"))

_UUID_RE = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|[+-]\d\d:\d\d)$")
_RFC2822_RE = re.compile(
    r"^((Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d\d? (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d(:\d\d)? ([+-]?\d\d[03]0|UT|GMT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|Z)$")
_EMAIL_WITH_NAME_RE = re.compile(r"^\S+@\S+ \(.+\)$")
_HTML_END_TAG_RE = re.compile(r"</(\w+)>")
_HTML_ENTITY_RE = re.compile(r"&(#?\w+)")
_RSS_CHARDATA_RE = re.compile(r"&#[x0-9]|<[/a-zA-Z]")
_BAD_CHARS_RE = re.compile("[\x80-\x9f\ufffd]")
_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
# HTMLValidator.htmltags of w3c/feedvalidator (src/feedvalidator/validators.py): the end tags
# its `nonhtml` rule takes for HTML.
_HTML_TAG_NAMES = """
    a abbr acronym address applet area article aside audio b base basefont bdi bdo big
    blockquote body br button canvas caption center cite code col colgroup command data
    datagrid datalist dd del details dfn dialog dir div dl dt em eventsource fieldset
    figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr
    html i iframe img input ins isindex kbd label legend li link m main mark map menu meta
    meter nav noframes noscript object ol optgroup option output p param picture pre progress
    q rp rt ruby s samp script section select slot small source span strike strong style sub
    summary sup table tbody td template textarea tfoot th thead time title tr track tt u ul
    var xmp plaintext embed comment listing video wbr"""
_HTML_TAGS = frozenset(_HTML_TAG_NAMES.split())
_UNSAFE_TAGS = {"script", "style", "iframe", "object", "embed", "frame", "frameset", "link",
                "meta", "base", "applet", "form", "input"}


def check_atom(body: bytes, self_url: str, now: datetime | None = None) -> list[str]:
    problems = _well_formed(body)
    if problems:
        return problems
    root = etree.fromstring(body)
    if not _SCHEMA.validate(root):
        problems += [f"RFC 4287 schema: {e.message} (line {e.line})" for e in _SCHEMA.error_log]
    if root.tag != f"{A}feed" or root.prefix is not None:
        problems.append("root must be an unprefixed Atom <feed>")
    if "atom" in (root.nsmap or {}):
        problems.append("AvoidNamespacePrefix")
    problems += _language(root.get("{http://www.w3.org/XML/1998/namespace}lang"), "xml:lang")
    problems += _self_link(root.findall(f"{A}link[@rel='self']"), self_url, "application/atom+xml")
    problems += _archived_feed(root, f"{A}link", self_url)
    problems += _hub_links(root, f"{A}link", self_url)
    problems += _id(root.findtext(f"{A}id"), "feed id")
    problems += _rfc3339(root.findtext(f"{A}updated"), "feed updated", now)
    lines = body.splitlines()
    for name in ("title", "subtitle"):
        problems += _text_construct(root.find(f"{A}{name}"), f"feed {name}", lines)
    seen_entry = False
    for child in root:
        if child.tag == f"{A}entry":
            seen_entry = True
        elif seen_entry and isinstance(child.tag, str):
            problems.append(f"MisplacedMetadata: {child.tag} after an entry")
    feed_has_author = root.find(f"{A}author") is not None
    entries = root.findall(f"{A}entry")
    for number, entry in enumerate(entries, start=1):
        where = f"entry {number}"
        problems += _id(entry.findtext(f"{A}id"), f"{where} id")
        problems += _rfc3339(entry.findtext(f"{A}updated"), f"{where} updated", now)
        problems += _rfc3339(entry.findtext(f"{A}published"), f"{where} published", now)
        problems += _text_construct(entry.find(f"{A}title"), f"{where} title", lines)
        problems += _text_construct(entry.find(f"{A}summary"), f"{where} summary", lines)
        if not feed_has_author and entry.find(f"{A}author") is None:
            problems.append(f"{where}: MissingElement author")
        content = entry.find(f"{A}content")
        alternate = entry.findall(f"{A}link[@rel='alternate']") + [
            link for link in entry.findall(f"{A}link") if link.get("rel") is None]
        if content is None and not alternate:
            problems.append(f"{where}: MissingContentOrAlternate")
        if content is not None:
            if content.get("type") != "html":
                problems.append(f"{where}: content type should be html")
            problems += _html(content.text or "", f"{where} content")
        problems += _atom_enclosures(entry, where)
        problems += _media_rss(entry, where)
    updated = [e.findtext(f"{A}updated") for e in entries]
    if len(set(updated)) != len(updated):
        problems.append("DuplicateUpdated: two entries share an updated value")
    ids = [e.findtext(f"{A}id") for e in entries]
    if len(set(ids)) != len(ids):
        problems.append("DuplicateEntries: two entries share an id")
    problems += _tombstones(root, set(ids), now)
    return problems


def _tombstones(root: etree._Element, entry_ids: set[str | None],
                now: datetime | None) -> list[str]:
    """RFC 6721 §2.1: `at:deleted-entry` in its namespace, a child of the feed (before its
    entries: checked above as MisplacedMetadata), with `ref` an IRI that is not the id of an
    entry of the same document (a deleted entry is not also present) and `when` an RFC 3339
    date-time."""
    problems = []
    for number, element in enumerate(
            (e for e in root.iter() if isinstance(e.tag, str)
             and etree.QName(e).localname == "deleted-entry"), start=1):
        where = f"tombstone {number}"
        if etree.QName(element).namespace != TOMBSTONES:
            problems.append(f"{where}: deleted-entry not in the RFC 6721 namespace "
                            f"({etree.QName(element).namespace})")
            continue
        if element.getparent() is not root:
            problems.append(f"{where}: at:deleted-entry must be a child of atom:feed")
        ref = element.get("ref")
        if ref is None or not _IRI_RE.match(ref):
            problems.append(f"{where}: ref is not an IRI: {ref!r}")
        elif ref in entry_ids:
            problems.append(f"{where}: ref {ref!r} is the id of an entry of the same document")
        problems += _rfc3339(element.get("when"), f"{where} when", now)
    return problems


def check_rss(body: bytes, self_url: str, now: datetime | None = None) -> list[str]:
    problems = _well_formed(body)
    if problems:
        return problems
    root = etree.fromstring(body)
    if root.tag != "rss" or root.get("version") != "2.0":
        return ["root must be <rss version='2.0'>"]
    if root.nsmap.get("atom", ATOM) != ATOM or any(
            uri == ATOM and prefix != "atom" for prefix, uri in root.nsmap.items()):
        problems.append("the Atom namespace must use the prefix 'atom'")
    channel = root.find("channel")
    if channel is None:
        return ["MissingElement channel"]
    for name in ("title", "link", "description"):
        if not (channel.findtext(name) or "").strip():
            problems.append(f"channel: missing {name}")
    problems += _language(channel.findtext("language"), "channel language")
    problems += _self_link(channel.findall(f"{A}link[@rel='self']"), self_url,
                           "application/rss+xml")
    problems += _archived_feed(channel, f"{A}link", self_url)
    problems += _hub_links(channel, f"{A}link", self_url)
    lines = body.splitlines()
    for name in ("title", "description"):
        problems += _plain_text(channel.findtext(name) or "", f"channel {name}", rss=True,
                                source=_source(lines, channel.find(name)))
    for name in ("lastBuildDate", "pubDate"):
        if channel.find(name) is not None:
            problems += _rfc2822(channel.findtext(name), f"channel {name}", now)
    editor = channel.findtext("managingEditor")
    if editor is not None and not _EMAIL_WITH_NAME_RE.match(editor):
        problems.append("managingEditor: expected 'address (Real Name)'")
    seen_item = False
    for child in channel:
        if child.tag == "item":
            seen_item = True
        elif seen_item and isinstance(child.tag, str):
            problems.append(f"MisplacedItem: {child.tag} after an item")
    items = channel.findall("item")
    guids: list[str] = []
    for number, item in enumerate(items, start=1):
        where = f"item {number}"
        guid = item.find("guid")
        if guid is None:
            problems.append(f"{where}: MissingGuid")
        else:
            guids.append(guid.text or "")
            if guid.get("isPermaLink") != "false" and (guid.text or "").startswith("urn:"):
                problems.append(f"{where}: InvalidPermalink")
        problems += _plain_text(item.findtext("title") or "", f"{where} title", rss=True,
                                source=_source(lines, item.find("title")))
        problems += _rfc2822(item.findtext("pubDate"), f"{where} pubDate", now)
        children = [child.tag for child in item]
        if CONTENT_ENCODED in children and (
                "description" not in children
                or children.index("description") > children.index(CONTENT_ENCODED)):
            problems.append(f"{where}: NeedDescriptionBeforeContent")
        for tag, label in (("description", "description"), (CONTENT_ENCODED, "content:encoded")):
            if item.find(tag) is not None:
                problems += _html(item.findtext(tag) or "", f"{where} {label}", absolute=True)
        author = item.findtext("author")
        if author is not None and not _EMAIL_WITH_NAME_RE.match(author):
            problems.append(f"{where}: author must be 'address (Real Name)'")
        if author is not None and item.find(DC_CREATOR) is not None:
            problems.append(f"{where}: DuplicateItemSemantics (author and dc:creator)")
        link = item.findtext("link") or ""
        if not re.match(r"^https?://[^/]", link):
            problems.append(f"{where}: link must be an absolute URL")
        problems += _rss_enclosures(item, where)
        problems += _media_rss(item, where)
    if len(set(guids)) != len(guids):
        problems.append("DuplicateValue: two items share a guid")
    return problems


def _well_formed(body: bytes) -> list[str]:
    if not body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>"):
        return ["document must start with an XML 1.0 declaration for UTF-8"]
    try:
        etree.fromstring(body)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"]
    text = body.decode("utf-8")
    if _BAD_CHARS_RE.search(text):
        return ["BadCharacters: C1 control or U+FFFD in the document"]
    return []


def _language(value: str | None, where: str) -> list[str]:
    if not value:
        return [f"{where}: missing language"]
    return [] if _LANG_RE.match(value.lower()) else [f"{where}: InvalidLanguage {value!r}"]


def _self_link(links: list[etree._Element], self_url: str, media_type: str) -> list[str]:
    if len(links) != 1:
        return [f"expected one rel=self link, found {len(links)}"]
    link = links[0]
    problems = []
    if link.get("href") != self_url:
        problems.append(f"SelfDoesntMatchLocation: {link.get('href')!r} != {self_url!r}")
    if link.get("type") not in (None, media_type):
        problems.append(f"SelfNotAtom: type {link.get('type')!r}")
    return problems


def _archived_feed(head: etree._Element, link_tag: str, self_url: str) -> list[str]:
    """RFC 5005: `<fh:archive/>` (empty, in its namespace, on the feed or channel) marks an
    archive document, which links rel="current" to its subscription document (not itself);
    prev-archive / next-archive / current are absolute URLs, at most one each, never the
    document's own URL; a subscription document has no next-archive (it is the newest);
    a feed is not both complete and archived (§2, §4). RSS carries the links as atom:link
    (Appendix B)."""
    problems = []
    for element in head.iter():
        if not isinstance(element.tag, str):
            continue
        name = etree.QName(element)
        if name.localname in ("archive", "complete") and name.namespace != FH and (
                element.getparent() is head):
            problems.append(f"{name.localname} element outside the fh namespace ({FH})")
    archive = head.findall(f"{{{FH}}}archive")
    if len(archive) > 1:
        problems.append("fh:archive more than once")
    if any(len(element) or (element.text or "").strip() for element in archive):
        problems.append("fh:archive must be empty")
    if archive and head.find(f"{{{FH}}}complete") is not None:
        problems.append("fh:archive and fh:complete together (RFC 5005 §4)")
    links: dict[str, list[str]] = {}
    for link in head.findall(link_tag):
        rel = link.get("rel")
        if rel in ("current", "prev-archive", "next-archive"):
            links.setdefault(rel, []).append(link.get("href") or "")
    for rel, hrefs in links.items():
        if len(hrefs) > 1:
            problems.append(f"rel={rel} more than once")
        for href in hrefs:
            if not re.match(r"^https?://[^/]+/", href):
                problems.append(f"rel={rel}: {href!r} is not an absolute URL")
            if href == self_url:
                problems.append(f"rel={rel} links the document to itself")
    if archive and "current" not in links:
        problems.append("archive document without rel=current")
    if not archive and "next-archive" in links:
        problems.append("subscription document (no fh:archive) with rel=next-archive")
    return problems


def _hub_links(head: etree._Element, link_tag: str, self_url: str) -> list[str]:
    """W3C WebSub §4: a feed names its hubs with `<link rel="hub" href>` (atom:link in RSS)
    beside exactly one `rel="self"` (the topic): each hub an absolute http(s) URL, named
    once, neither the document itself; and the links are the feed's own (in the feed or
    channel, not in an entry)."""
    problems = []
    hubs = [link.get("href") or "" for link in head.findall(link_tag) if link.get("rel") == "hub"]
    for href in hubs:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", href):
            problems.append(f"rel=hub: {href!r} is not an absolute http(s) URL")
        if href == self_url:
            problems.append("rel=hub names the document itself")
    if len(set(hubs)) != len(hubs):
        problems.append("rel=hub: the same hub twice")
    if hubs and len([link for link in head.findall(link_tag)
                     if link.get("rel") == "self"]) != 1:
        problems.append("rel=hub without exactly one rel=self (WebSub §4)")
    for element in head.iter(link_tag):
        if element.get("rel") == "hub" and element.getparent() is not head:
            problems.append("rel=hub inside an entry or item: hubs are the feed's")
    return problems


def _id(value: str | None, where: str) -> list[str]:
    if value is None:
        return [f"{where}: missing"]
    return [] if _UUID_RE.match(value) else [f"{where}: not a canonical urn:uuid: {value!r}"]


def _rfc3339(value: str | None, where: str, now: datetime | None) -> list[str]:
    if value is None:
        return [f"{where}: missing"]
    if not _RFC3339_RE.match(value):
        return [f"{where}: InvalidRFC3339Date {value!r}"]
    now = now or datetime.now(UTC)
    if value < "1990-01-01" or value > (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"):
        return [f"{where}: ImplausibleDate {value!r}"]
    return []


def _rfc2822(value: str | None, where: str, now: datetime | None) -> list[str]:
    if value is None:
        return [f"{where}: missing"]
    if not _RFC2822_RE.match(value):
        return [f"{where}: not an RFC 822 date {value!r}"]
    moment = parsedate_to_datetime(value)
    if value[:3] != moment.strftime("%a"):
        return [f"{where}: IncorrectDOW {value!r}"]
    now = now or datetime.now(UTC)
    if moment.year < 1990 or moment > now + timedelta(seconds=600):
        return [f"{where}: ImplausibleDate {value!r}"]
    return []


def _text_construct(element: etree._Element | None, where: str,
                    lines: list[bytes] | None = None) -> list[str]:
    if element is None:
        return []
    kind = element.get("type", "text")
    if kind == "text":
        return _plain_text(element.text or "", where, rss=False,
                           source=_source(lines or [], element))
    if kind == "html":
        return _html(element.text or "", where)
    return [f"{where}: unexpected type {kind!r}"]


def _source(lines: list[bytes], element: etree._Element | None) -> bytes:
    """The source lines of an element of text only: from its start tag's line to its end
    tag's (the validator's `rssCharData[startline-1:line]`)."""
    if element is None or element.sourceline is None:
        return b""
    start = element.sourceline - 1
    return b"\n".join(lines[start:start + 1 + (element.text or "").count("\n")])


def _plain_text(value: str, where: str, rss: bool, source: bytes = b"") -> list[str]:
    """The validator's `nonhtml.validate` (w3c/feedvalidator src/feedvalidator/validators.py),
    in its order: (1) an end tag of an HTML element (`</(\\w+)>`, name in htmltags) warns,
    always; (2) else, when `&(#?\\w+)` matches at all, each match that is an HTML entity name,
    `apos` or not all letters warns, unless a source line of the element holds `&#x` (its
    "experimental RSS-Profile support": hex references say the text is plain); (3) else, in
    RSS 2 only, `&#[x0-9]` or `<[/a-zA-Z]` is CharacterData, under the same `&#x` exception."""
    if not value.strip():
        return [f"{where}: NotBlank"]
    if any(tag.lower() in _HTML_TAGS for tag in _HTML_END_TAG_RE.findall(value)):
        return [f"{where}: ContainsUndeclaredHTML {value[:60]!r}"]
    marked_plain = b"&#x" in source
    names = _HTML_ENTITY_RE.findall(value)
    if names:
        if not marked_plain and any(name in html.entities.name2codepoint or name == "apos"
                                    or not name.isalpha() for name in names):
            return [f"{where}: ContainsUndeclaredHTML (entity) {value[:60]!r}"]
        return []
    if rss and not marked_plain and _RSS_CHARDATA_RE.search(value):
        return [f"{where}: CharacterData {value[:60]!r}"]
    return []


def _html(value: str, where: str, absolute: bool = False) -> list[str]:
    parser = html5lib.HTMLParser(strict=True)
    try:
        fragment = parser.parseFragment(value)
    except html5lib.html5parser.ParseError as e:
        return [f"{where}: NotHtml ({e})"]
    problems = []
    for element in fragment.iter():
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        if tag in _UNSAFE_TAGS:
            problems.append(f"{where}: SecurityRisk <{tag}>")
        if any(name.lower().startswith("on") for name in element.attrib):
            problems.append(f"{where}: SecurityRiskAttr on <{tag}>")
    if absolute:
        for ref in re.findall(r"<a\s+href=[\"']?([^\"' >]*)", value) + re.findall(
                r"<img\s+[^>]*src=[\"']?([^\"' >]*)", value):
            if not re.match(r"\w+:", ref):
                problems.append(f"{where}: ContainsRelRef {ref!r}")
    return problems


_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
_WEB_URL_RE = re.compile(r"^https?://[^/\s]+\S*$")
MEDIA_RSS = "{http://search.yahoo.com/mrss/}"


def _atom_enclosures(entry: etree._Element, where: str) -> list[str]:
    """RFC 4287 §4.2.7: an enclosure link has an href (an IRI: here absolute, so readers out of
    context can fetch it), a type (§4.2.7.3: a media type) and, when present, a length
    (§4.2.7.6: octets, a non-negative integer)."""
    problems = []
    for link in entry.findall(f"{A}link[@rel='enclosure']"):
        if not _WEB_URL_RE.match(link.get("href") or ""):
            problems.append(f"{where}: enclosure link needs an absolute href")
        if not _MEDIA_TYPE_RE.match(link.get("type") or ""):
            problems.append(f"{where}: enclosure link needs a media type")
        length = link.get("length")
        if length is not None and not length.isdigit():
            problems.append(f"{where}: enclosure length must be a non-negative integer")
    return problems


def _rss_enclosures(item: etree._Element, where: str) -> list[str]:
    """RSS 2.0 <enclosure>: url, length and type are all required; length is bytes (0 when
    unknown, per the RSS Advisory Board profile), the url an absolute http URL. One per item:
    the profile says a second one is not supported by many aggregators."""
    problems = []
    enclosures = item.findall("enclosure")
    if len(enclosures) > 1:
        problems.append(f"{where}: more than one enclosure (the RSS profile advises one)")
    for enclosure in enclosures:
        if not _WEB_URL_RE.match(enclosure.get("url") or ""):
            problems.append(f"{where}: enclosure needs an absolute url")
        length = enclosure.get("length")
        if length is None or not length.isdigit():
            problems.append(f"{where}: enclosure length must be an integer (bytes)")
        if not _MEDIA_TYPE_RE.match(enclosure.get("type") or ""):
            problems.append(f"{where}: enclosure needs a media type")
    return problems


def _media_rss(element: etree._Element, where: str) -> list[str]:
    """Media RSS: <media:content> and <media:thumbnail> need a url."""
    return [f"{where}: media:{tag} needs an absolute url"
            for tag in ("content", "thumbnail")
            for media in element.findall(f"{MEDIA_RSS}{tag}")
            if not _WEB_URL_RE.match(media.get("url") or "")]
