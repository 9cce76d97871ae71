"""ownership: which file publishes which slug. Pure: records in, owners and duplicates out; what
the state remembers comes from a dict (the ClaimHistory), no SQLite, no seeds folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc.errors import Rejection
from feedsvc.ingest.catalog import Record
from feedsvc.model import Stamp
from feedsvc.publish.ownership import Ownership, resolve_owners

FOLDER = Path("/seeds")


class History:
    """What the state would remember: the file each slug's stamp names, and each file's last
    slug; updated as the publisher does once a batch is resolved."""

    def __init__(self) -> None:
        self.stamp_owner: dict[str, str] = {}  # slug → file name its stamp names
        self.last_slug: dict[str, str] = {}  # file name → slug it published last

    def last_slug_of(self, file_name: str) -> str | None:
        return self.last_slug.get(file_name)

    def file_name_of(self, slug: str) -> str | None:
        return self.stamp_owner.get(slug)


def good(slug: str) -> Record:
    return Record(slug, f"hash-{slug}", None, 1, 1, False)


def broken(name: str) -> Record:
    return Record(None, "", Rejection(str(FOLDER / name), 3, "no title"), 0, 0, False)


def draft(slug: str) -> Record:
    return Record(slug, f"hash-{slug}", None, 1, 1, False, (None, None, True))


def apply(ownership: Ownership, history: History,
          changes: dict[str, Record | None]) -> dict[str, str]:
    """A batch as the publisher runs it: absorb each file, choose the touched slugs' owners,
    hand them over, and let the state record the owners. Returns the owners chosen."""
    touched: set[str] = set()
    for name, record in changes.items():
        touched.update(ownership.absorb(name, record))
        if record is not None and record.slug is not None:
            touched.add(record.slug)
    owners = ownership.choose_owners(sorted(touched))
    for slug in sorted(touched):
        ownership.hand_over(slug, owners.get(slug))
        if slug in owners:
            history.stamp_owner[slug] = owners[slug]
            history.last_slug[owners[slug]] = slug
    return owners


def check(ownership: Ownership, records: dict[str, Record | None],
          recorded: dict[str, str]) -> None:
    """Every invariant of slug ownership, against the files as they are now (`recorded`:
    slug → the file the state had publishing it before the batch)."""
    claims: dict[str, list[str]] = {}
    for name, slug in ownership.claim_of.items():
        claims.setdefault(slug, []).append(name)
    for slug, names in claims.items():
        assert ownership.claimants(slug) == sorted(names)  # a file claims at most one slug
    for name in ownership.drafts:
        assert name not in ownership.claim_of  # drafts claim nothing
    for name, record in records.items():
        if record is not None and record.slug is not None and not record.draft:
            assert ownership.claim_of[name] == record.slug
    for slug, names in claims.items():
        owner = ownership.owner[slug]  # a claimed slug has an owner, one of its claimants
        assert owner in names
        before = recorded.get(slug)
        # The recorded owner keeps it while it still claims it, else the first by name.
        assert owner == (before if before in names else min(names))
        for name in names:
            if name == owner or name in ownership.errors:
                assert name not in ownership.duplicates
            else:
                assert ownership.duplicates[name] == Rejection(
                    str(FOLDER / name), 1,
                    f"duplicate slug '{slug}': {owner} already publishes it")
    assert set(ownership.owner) == set(claims)  # no owner without a claim
    assert set(ownership.duplicates) <= set(ownership.claim_of)


@pytest.mark.parametrize(("batches", "owners", "duplicates"), [
    # Two files, one slug: the first by name publishes it.
    ([{"b.txt": good("x"), "a.txt": good("x")}], {"x": "a.txt"}, {"b.txt": "a.txt"}),
    # The owner keeps its slug when a file that sorts first claims it later.
    ([{"b.txt": good("x")}, {"a.txt": good("x")}], {"x": "b.txt"}, {"a.txt": "b.txt"}),
    # Deleting the owner hands the slug to the next claimant.
    ([{"a.txt": good("x"), "b.txt": good("x"), "c.txt": good("x")}, {"a.txt": None}],
     {"x": "b.txt"}, {"c.txt": "b.txt"}),
    # Moving the owner to another slug frees the first one for the next claimant.
    ([{"a.txt": good("x"), "b.txt": good("x")}, {"a.txt": good("y")}],
     {"x": "b.txt", "y": "a.txt"}, {}),
    # A draft claims nothing; its slug goes to the other file.
    ([{"a.txt": good("x"), "b.txt": good("x")}, {"a.txt": draft("x")}], {"x": "b.txt"}, {}),
    # A broken owner keeps its last good version published; the other stays a duplicate.
    ([{"a.txt": good("x"), "b.txt": good("x")}, {"a.txt": broken("a.txt")}],
     {"x": "a.txt"}, {"b.txt": "a.txt"}),
    # A file broken from the start claims nothing.
    ([{"a.txt": broken("a.txt"), "b.txt": good("x")}], {"x": "b.txt"}, {}),
])
def test_owners_and_duplicates(batches: list[dict[str, Record | None]],
                               owners: dict[str, str], duplicates: dict[str, str]) -> None:
    history = History()
    ownership = Ownership(FOLDER, history)
    records: dict[str, Record | None] = {}
    for batch in batches:
        before = dict(history.stamp_owner)
        apply(ownership, history, batch)
        records.update(batch)
        check(ownership, records, before)
    assert ownership.owner == owners
    assert {name: e.message.rsplit(": ", 1)[1].split()[0]
            for name, e in ownership.duplicates.items()} == duplicates


def test_a_broken_file_claims_its_last_good_slug_after_a_restart() -> None:
    """With nothing in memory, the state says which slug the file published last, and its
    stamp must still name that file."""
    history = History()
    history.last_slug["a.txt"] = "x"
    history.stamp_owner["x"] = "a.txt"
    ownership = Ownership(FOLDER, history)
    assert ownership.claim_for("a.txt", broken("a.txt")) == "x"
    history.stamp_owner["x"] = "b.txt"  # another file publishes it since
    assert ownership.claim_for("a.txt", broken("a.txt")) is None
    assert ownership.claim_for("a.txt", draft("x")) is None  # not even its last good version
    assert ownership.claim_for("a.txt", None) is None


def test_a_broken_owner_reports_its_last_good_version() -> None:
    history = History()
    ownership = Ownership(FOLDER, history)
    apply(ownership, history, {"a.txt": good("x")})
    apply(ownership, history, {"a.txt": broken("a.txt")})
    (rejection,) = ownership.rejected()
    assert ownership.last_good_of(rejection, broken("a.txt")) == "x"
    assert ownership.last_good_of(rejection, good("x")) is None  # the error is in showing it


def test_resolve_owners_agrees_with_the_incremental_owners() -> None:
    history = History()
    ownership = Ownership(FOLDER, history)
    files = {"c.txt": good("x"), "a.txt": good("y"), "b.txt": good("x"), "d.txt": good("x")}
    apply(ownership, history, files)
    apply(ownership, history, {"e.txt": broken("e.txt")})
    owners, rejected = resolve_owners(
        {FOLDER / name: record for name, record in {**files, "e.txt": broken("e.txt")}.items()},
        {slug: Stamp(slug, 0, 0, "", name) for slug, name in history.stamp_owner.items()})
    assert {slug: path.name for slug, path in owners.items()} == ownership.owner
    assert rejected == ownership.rejected()


NAMES = ("a.txt", "b.txt", "c.txt", "d.txt")
RECORDS = st.one_of(st.none(), st.sampled_from([good("x"), good("y"), good("z"), draft("x")]),
                    st.builds(broken, st.sampled_from(NAMES)))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(NAMES), RECORDS, min_size=1), max_size=12))
def test_ownership_invariants_hold_after_any_batches(
        batches: list[dict[str, Record | None]]) -> None:
    history = History()
    ownership = Ownership(FOLDER, history)
    records: dict[str, Record | None] = {}
    for batch in batches:
        # A broken record's rejection names its own file.
        batch = {name: broken(name) if r is not None and r.error is not None else r
                 for name, r in batch.items()}
        before = dict(history.stamp_owner)
        apply(ownership, history, batch)
        records.update(batch)
        check(ownership, records, before)


def test_a_claimant_with_an_error_of_its_own_is_not_also_a_duplicate() -> None:
    history = History()
    ownership = Ownership(FOLDER, history)
    apply(ownership, history, {"a.txt": good("x"), "b.txt": good("x")})
    assert set(ownership.duplicates) == {"b.txt"}
    ownership.reject_unexpected("b.txt", ValueError("bad <text>"), "cannot show x")
    apply(ownership, history, {"a.txt": good("x")})  # a batch that touches x
    check(ownership, {"a.txt": good("x"), "b.txt": good("x")}, {"x": "a.txt"})
    assert ownership.rejected() == (Rejection(
        str(FOLDER / "b.txt"), 1, "cannot show x: unexpected error ValueError: bad <text> (a "
        "bug; run with -v for the traceback, and report it)"),)
    apply(ownership, history, {"b.txt": good("x")})  # it changed: its own error is gone
    assert set(ownership.duplicates) == {"b.txt"} and not ownership.errors
