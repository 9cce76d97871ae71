"""What the site's HTML pages read from the state (publish/sitepages.py): the published
entries a page at a time, the tags with their counts, an entry's neighbours, and what tells
that any of them changed. Read-only."""

from __future__ import annotations

from collections.abc import Sequence

from feedsvc.model import US, Content


class SiteQueries:
    """Mixed into `Store`, which provides the connection, the schema it learnt and the
    statement runner below."""

    _has_tags: bool
    _has_tombstones: bool
    _updated: str
    _text: str

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def tagged(self, tag: str, now: int, limit: int) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _row_content(self, row: Sequence[object]) -> Content | None:
        raise NotImplementedError

    def published_page(self, now: int, offset: int, limit: int, tag: str | None = None
                       ) -> list[tuple[str, int, int, Content | None]]:
        """(slug, published, updated, content) of the entries published by `now` (with this
        tag), newest first, ties by slug: those after the first `offset`, at most `limit`
        (the site's pages: publish/sitepages.py). A row whose content cannot be read has
        None: it still takes its place (pages are cut by position)."""
        if tag is not None and not self._has_tags:
            return []
        join, args = ("JOIN tags t ON t.slug = s.slug AND t.tag = ? ", (tag,)) if tag else ("", ())
        updated = "s.updated" if self._updated == "updated" else f"(s.updated * {US})"
        text = "s.text" if self._text == "text" else "''"
        rows = self._query(
            f"SELECT s.slug, s.published, {updated}, s.title, s.body, {text}, s.source "
            f"FROM stamps s {join}WHERE s.live = 1 AND s.published <= ? "
            "ORDER BY s.published DESC, s.slug LIMIT ? OFFSET ?", (*args, now, limit, offset))
        return [(str(row[0]), int(row[1]), int(row[2]), self._row_content(row[3:]))
                for row in rows]

    def published_keys(self, now: int, tag: str | None = None, offset: int = 0,
                       limit: int = -1) -> list[tuple[int, str, int]]:
        """(published, slug, updated) of the entries published by `now` (with this tag),
        OLDEST first (the site's order reversed), from the index alone: what the site's pages
        are made of (publish/pageblocks.py)."""
        if tag is not None and not self._has_tags:
            return []
        join, args = ("JOIN tags t ON t.slug = s.slug AND t.tag = ? ", (tag,)) if tag else ("", ())
        return [(int(row[0]), str(row[1]), int(row[2])) for row in self._query(  # type: ignore[call-overload]
            f"SELECT s.published, s.slug, s.updated FROM stamps s {join}"
            "WHERE s.live = 1 AND s.published <= ? ORDER BY s.published, s.slug DESC "
            "LIMIT ? OFFSET ?", (*args, now, limit, offset))]

    def tagged_keys(self, now: int) -> list[tuple[str, int, str, int]]:
        """(tag, published, slug, updated) of every tagged entry published by `now`, by tag,
        then oldest first: the stamps from the index `stamps_site` first, their tags from
        `tags_by_slug` (both covering: 26 ms for 20,000 tag rows, 330 ms the other way round,
        which read every stamp's row)."""
        if not self._has_tags:
            return []
        return [(str(row[0]), int(row[1]), str(row[2]), int(row[3]))  # type: ignore[call-overload]
                for row in self._query(
                    "SELECT t.tag, s.published, s.slug, s.updated FROM stamps s "
                    "CROSS JOIN tags t ON t.slug = s.slug WHERE s.live = 1 AND s.published <= ? "
                    "ORDER BY t.tag, s.published, s.slug DESC", (now,))]

    def tag_label(self, tag: str, slug: str) -> str:
        """The label an entry gives a tag."""
        rows = self._query("SELECT label FROM tags WHERE tag = ? AND slug = ?", (tag, slug))
        return str(rows[0][0]) if rows else tag

    def published_count(self, now: int, tag: str | None = None) -> int:
        """How many entries are published by `now` (with this tag)."""
        if tag is not None and not self._has_tags:
            return 0
        join, args = ("JOIN tags t ON t.slug = s.slug AND t.tag = ? ", (tag,)) if tag else ("", ())
        rows = self._query(f"SELECT COUNT(*) FROM stamps s {join}"
                           "WHERE s.live = 1 AND s.published <= ?", (*args, now))
        return int(rows[0][0])  # type: ignore[call-overload]

    def neighbour(self, slug: str, now: int, newer: bool) -> str | None:
        """The entry published by `now` just newer (or older) than this published one, in the
        site's order (newest `published` first, ties by slug); None at either end."""
        rows = self._query("SELECT published FROM stamps WHERE slug = ? AND live = 1 "
                           "AND published <= ?", (slug, now))
        if not rows:
            return None
        published = rows[0][0]
        # A range on `published` first, so that stamps_site finds it (29 ms → 0.1 ms
        # at 100,000 entries).
        if newer:
            where, order = ("published >= ? AND (published > ? OR slug < ?)",
                            "published ASC, slug DESC")
        else:
            where, order = ("published <= ? AND (published < ? OR slug > ?)",
                            "published DESC, slug ASC")
        found = self._query(f"SELECT slug FROM stamps WHERE live = 1 AND published <= ? "
                            f"AND {where} ORDER BY {order} LIMIT 1",
                            (now, published, published, slug))
        return str(found[0][0]) if found else None

    def data_version(self) -> int:
        """SQLite's `PRAGMA data_version` of this connection: it changes when another
        connection has committed since it was last read."""
        return int(self._query("PRAGMA data_version")[0][0])  # type: ignore[call-overload]

    def site_version(self, now: int) -> tuple[int, ...]:
        """What the site's pages made from the state change with (publish/sitepages.py): the
        entries published by `now`, a sum of their `updated` (each only ever moves forward:
        any edit moves the sum; its low 32 bits each, so that 100,000 of them cannot overflow
        SQLite's integers), the newest deletion, and the tags' rows."""
        updated = "updated" if self._updated == "updated" else f"(updated * {US})"
        rows = self._query(f"SELECT COUNT(*), SUM({updated} % 4294967296) FROM stamps "
                           "WHERE live = 1 AND published <= ?", (now,))
        deleted = (self._query("SELECT MAX(deleted) FROM tombstones") if self._has_tombstones
                   else [(None,)])
        tags = (self._query("SELECT COUNT(*), SUM(length(tag) + length(label)) FROM tags")
                if self._has_tags else [(0, 0)])
        return tuple(int(value or 0) for value in (*rows[0], deleted[0][0], *tags[0]))

    def tag_counts(self, now: int) -> list[tuple[str, str, int]]:
        """(tag, label, entries published by `now`) of every tag that has some, by tag."""
        if not self._has_tags:
            return []
        return [(str(row[0]), str(row[1]), int(row[2])) for row in self._query(
            "SELECT t.tag, MIN(t.label), COUNT(*) FROM tags t JOIN stamps s ON s.slug = t.slug "
            "WHERE s.live = 1 AND s.published <= ? GROUP BY t.tag ORDER BY t.tag", (now,))]

