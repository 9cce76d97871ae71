"""The CSS that makes a raw Atom or RSS document readable when a person opens it in a browser.

Every Atom and RSS document starts with `<?xml-stylesheet type="text/css" href="…"?>` (W3C,
"Associating Style Sheets with XML documents 1.0"): a browser that displays the feed applies
this CSS to the XML itself. It says what a feed is and how to subscribe, shows the feed's
address to copy, and lists the entries. CSS only, no XSLT (browsers are removing XSLT), and no
content negotiation: readers that send browser-like `Accept` headers still get the feed, and
readers ignore the processing instruction.

The stylesheet depends only on the feed's language: its URL carries a hash of its bytes, so it
is served with a year's `immutable` cache and a change gives a new URL. Pure.
"""

from __future__ import annotations

import functools
import hashlib
import html
from datetime import UTC, datetime

#: Its Last-Modified: the bytes depend on the code alone (and the language), not on the seeds
#: or the clock, so a constant that is never later than the clock.
STYLESHEET_DATE = datetime(2026, 11, 30, tzinfo=UTC)
CSS_TYPE = "text/css; charset=utf-8"
#: The Content-Type of the Atom and RSS documents, for readers and browsers alike (no
#: negotiation on Accept): Chromium shows `application/atom+xml` and `application/rss+xml` as
#: plain text and never applies their stylesheet; `application/xml` it renders with it. Feed
#: readers take `application/xml` (feedparser, and the W3C validator: mediaTypes.py lists it
#: among FEED_TYPES, with no NonSpecificMediaType warning when `<feed` or `<rss` is in the first
#: 512 bytes, as here). Autodiscovery links keep the registered types (RFC 4287 §7).
FEED_XML_TYPE = "application/xml; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"

#: The texts the stylesheet shows, per language (the first subtag of `[feed] language`);
#: English for any other.
_TEXTS = {
    "en": {
        "about": "This is a web feed, also known as an RSS or Atom feed. Subscribe by copying "
                 "its address into your feed reader (NetNewsWire, Feedly, Thunderbird, "
                 "Inoreader…): new articles come to you as they are published, with no "
                 "account, no email and no tracking.",
        "address": "Address to copy into your reader: ",
        "entries": "Latest articles",
        "published": "Published ",
    },
    "fr": {
        "about": "Ceci est un fil d’actualité, aussi appelé flux RSS ou Atom. Pour vous "
                 "abonner, copiez son adresse dans votre lecteur de flux (NetNewsWire, Feedly, "
                 "Thunderbird, Inoreader…) : les nouveaux articles vous parviennent dès leur "
                 "publication, sans compte, sans courriel et sans pistage.",
        "address": "Adresse à copier dans votre lecteur : ",
        "entries": "Derniers articles",
        "published": "Publié le ",
    },
}

# Element names without a namespace prefix match in any namespace (CSS Namespaces §2, no
# default namespace declared): `link` is Atom's and RSS's `atom:link` alike, `encoded` is
# `content:encoded`. What a reader needs is shown; ids, dates in machine form, HTML kept as
# escaped text (`content`, `content:encoded`) and the like are hidden.
_CSS = """\
@charset "utf-8";
/* feedsvc: an Atom or RSS feed opened in a browser (see <?xml-stylesheet?>) */
:root {{ margin: 0 auto; padding: 1rem; max-width: 42rem;
  font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1a1a1a; background: #fff; overflow-wrap: anywhere; }}
feed > *, channel > *, entry > *, item > * {{ display: none; }}
:root::before {{ display: block; content: "{about}"; padding: 0.75rem 1rem;
  margin: 0 0 1rem; background: #eef4fb; border-left: 4px solid #2a6ebb; }}
feed > title, channel > title {{ display: block; font-size: 1.75rem; font-weight: 700;
  line-height: 1.2; margin: 0 0 0.25rem; }}
feed > subtitle, channel > description {{ display: block; color: #555; margin: 0 0 1rem; }}
rss > channel {{ display: flex; }}
/* The elements in a reader's order: a feed's metadata is in no fixed order (RFC 4287 §4.1.1). */
rss {{ display: block; }}
feed, channel {{ display: flex; flex-direction: column; }}
feed > title, channel > title {{ order: 1; }}
feed > subtitle, channel > description {{ order: 2; }}
feed > link[rel="self"], channel > link[rel="self"] {{ order: 3; }}
feed > entry, channel > item {{ order: 4; }}
feed > entry, channel > item {{ display: block; margin: 0 0 1.25rem; }}
feed > link[rel="self"], channel > link[rel="self"] {{ display: block; margin: 0 0 1.5rem;
  font-family: ui-monospace, monospace; font-size: 0.9rem; }}
feed > link[rel="self"]::before, channel > link[rel="self"]::before {{
  content: "{address}"; display: block; font-family: system-ui, sans-serif; color: #555; }}
feed > link[rel="self"]::after, channel > link[rel="self"]::after {{
  content: attr(href); display: block; padding: 0.4rem 0.6rem; background: #f4f4f4;
  border: 1px solid #ddd; user-select: all; }}
feed > entry:first-of-type::before, channel > item:first-of-type::before {{
  content: "{entries}"; display: block; font-size: 1.25rem; font-weight: 700;
  margin: 0 0 0.75rem; padding-top: 0.5rem; border-top: 1px solid #ddd; }}
entry > title, item > title {{ display: block; font-size: 1.1rem; font-weight: 600; }}
entry > published::before, item > pubDate::before {{ content: "{published}"; }}
entry > published, item > pubDate {{ display: block; color: #555; font-size: 0.9rem; }}
entry > summary, item > description {{ display: block; margin: 0.25rem 0 0; }}
entry > link:not([rel]), entry > link[rel="alternate"], item > link {{ display: block;
  font-size: 0.9rem; color: #2a6ebb; }}
entry > link:not([rel])::after, entry > link[rel="alternate"]::after {{
  content: attr(href); }}
"""


def _css_string(text: str) -> str:
    """`text` inside a CSS double-quoted string (CSS Syntax §4.3.5: `\\` and `"` escaped)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


@functools.lru_cache(maxsize=8)  # one language per process, asked for at every render
def stylesheet_css(language: str) -> bytes:
    """The stylesheet's bytes for a feed in this language."""
    texts = _TEXTS.get(language.split("-")[0].lower(), _TEXTS["en"])
    return _CSS.format(**{key: _css_string(value) for key, value in texts.items()}).encode()


#: Its route: one digest is served (the current stylesheet's), any other is 404.
STYLESHEET_ROUTE = "/feed-style.{digest}.css"


@functools.lru_cache(maxsize=8)
def stylesheet_path(language: str) -> str:
    """Its URL path: the hash of its bytes is in it, so a cached copy is never stale."""
    digest = hashlib.blake2b(stylesheet_css(language), digest_size=8).hexdigest()
    return f"/feed-style.{digest}.css"


def add_stylesheet(document: bytes, base_url: str, language: str) -> bytes:
    """The XML document with the processing instruction after its XML declaration (it must
    come before the root element; XML 1.0 §2.8: after the declaration)."""
    href = base_url + stylesheet_path(language)[1:]
    instruction = f'<?xml-stylesheet type="text/css" href="{html.escape(href)}"?>\n'.encode()
    end = document.index(b"?>") + 2 if document.startswith(b"<?xml ") else 0
    if document[end:end + 1] == b"\n":
        end += 1
    return document[:end] + instruction + document[end:]
