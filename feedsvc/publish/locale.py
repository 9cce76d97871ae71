"""The pages' language and time: dates written as the feed's language writes them, in the
feed's time zone, and labels from gettext message catalogs. Pure, cached per language.

Dates come from CLDR through Babel (every language CLDR knows, no table of our own): the
locale's long date and short time, joined by its "at time" pattern when CLDR has one (fr
`{1} 'à' {0}` → `24 novembre 2026 à 08:30`; en `{1} 'at' {0}` → `November 24, 2026 at 8:30 AM`),
else by its long date-time pattern (es `{1}, {0}`). Each sits in a `<time datetime>` holding the
same instant in RFC 3339, with the feed's UTC offset at that moment.

Labels are the English msgids of `locales/{language}/LC_MESSAGES/feedsvc.po`, read with
Babel's PO reader and compiled in memory the first time a language is asked for (the .po files
are package data: no compile step for `pip install .`), then looked up with gettext. A language
without a catalog, or a label its catalog lacks, falls back to the English text; `fr-CA` uses
`fr`'s catalog.
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import datetime
from html import escape
from importlib import resources
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

#: The language of the msgids, and of every page whose language Babel does not know.
FALLBACK = "en"
_DOMAIN = "feedsvc"


#: Moments whose <time> element each PageLocale keeps written.
WRITTEN_KEPT = 4096


class PageLocale:
    """One language in one time zone: `text(msgid)` and `when(moment)`."""

    def __init__(self, language: str, timezone: str) -> None:
        self.language = language
        self.locale = _babel_locale(language)
        self.zone = ZoneInfo(timezone)
        self._messages = _catalog(language)
        relative = self.locale._data.get("datetime_formats_relative") or {}
        self._join = str(relative.get("long") or self.locale.datetime_formats["long"])
        # moment → its <time> element: a feed's front page shows the same 50 moments change
        # after change, and Babel takes ~50 µs to write one (a third of an update's time).
        self._written: dict[datetime, str] = {}

    def text(self, msgid: str, **values: object) -> str:
        """The label in this language (English when there is no translation), with `values`
        put in its `{name}` fields. Plain text: escape it for HTML."""
        message = self._messages.gettext(msgid)
        return message.format(**values) if values else message

    def plural(self, singular: str, plural: str, count: int, **values: object) -> str:
        """The label for `count` of something, in the plural form the language uses for it
        (the catalog's `Plural-Forms`: fr says `1 article`, `0 article`, `2 articles`)."""
        return self._messages.ngettext(singular, plural, count).format(count=count, **values)

    def number(self, value: float) -> str:
        """A number as the language writes it (fr `1,5`, en `1.5`)."""
        return format_decimal(value, locale=self.locale)

    def date_text(self, moment: datetime) -> str:
        """`moment` as this language writes a date and time, in the feed's zone."""
        local = moment.astimezone(self.zone)
        day = format_date(local, "long", locale=self.locale)
        clock = format_time(local, "short", tzinfo=self.zone, locale=self.locale)
        return _apply(self._join, clock, day)

    def day_text(self, moment: datetime) -> str:
        """The date alone (the feed's zone)."""
        return format_date(moment.astimezone(self.zone), "long", locale=self.locale)

    def month_text(self, year: int, month: int) -> str:
        """A month and year as the language writes them standalone (fr `novembre 2026`)."""
        return format_skeleton("yMMMM", datetime(year, month, 1), locale=self.locale)

    def when(self, moment: datetime) -> str:
        """HTML: `<time datetime="RFC 3339 in the feed's zone">localized</time>`."""
        written = self._written.get(moment)
        if written is None:
            local = moment.astimezone(self.zone).replace(microsecond=0)
            written = (f'<time datetime="{local.isoformat()}">'
                       f"{escape(self.date_text(moment), quote=False)}</time>")
            if len(self._written) >= WRITTEN_KEPT:
                self._written.clear()  # bounded: a build writes every entry's page once
            self._written[moment] = written
        return written


@functools.lru_cache(maxsize=32)
def page_locale(language: str, timezone: str) -> PageLocale:
    return PageLocale(language, timezone)


def _apply(pattern: str, time_text: str, date_text: str) -> str:
    """A CLDR date-time glue pattern (`{1}` date, `{0}` time, quoted literals) applied."""
    out, quoted, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            if pattern[i + 1:i + 2] == "'":  # '' is a literal quote
                out.append("'")
                i += 2
                continue
            quoted = not quoted
        elif not quoted and pattern.startswith("{0}", i):
            out.append(time_text)
            i += 3
            continue
        elif not quoted and pattern.startswith("{1}", i):
            out.append(date_text)
            i += 3
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _babel_locale(language: str) -> Locale:
    for tag in (language, language.split("-")[0], FALLBACK):
        try:
            return Locale.parse(tag, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    raise AssertionError("unreachable: English is always known")  # pragma: no cover


@functools.lru_cache(maxsize=32)
def _catalog(language: str) -> gettext.NullTranslations:
    """The translations of the most specific catalog there is (`fr-CA`, then `fr`); English
    (the msgids) for any label it lacks, and for a language with no catalog."""
    base = language.replace("-", "_")
    for name in dict.fromkeys((base, base.split("_")[0].lower())):
        if not name.isidentifier():
            continue
        source = resources.files(__package__).joinpath("locales", name, "LC_MESSAGES",
                                                      f"{_DOMAIN}.po")
        if source.is_file():
            with source.open("rb") as handle:
                catalog = read_po(handle, locale=name)
            compiled = io.BytesIO()
            write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
            compiled.seek(0)
            return gettext.GNUTranslations(compiled)
    return gettext.NullTranslations()
