"""source: which names are seeds, and reading one without ever hanging or reading too much."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedsvc.errors import Rejection
from feedsvc.ingest.source import SeedFile, is_seed_name, list_seeds, read_seed, stat_seed


@pytest.mark.parametrize(("name", "expected"), [
    ("post.txt", True), ("#draft.txt", True), ("000_x.txt", True),
    (".post.txt", False), (".#post.txt", False), ("post.txt~", False), ("post.txt.swp", False),
    ("post.txt.tmp", False), ("#post.txt#", False), ("post.md", True), ("POST.TXT", False),
    ("post.txt.bak", False), ("4913", False), ("post.md~", False), (".post.md", False),
    ("post.markdown", False), ("POST.MD", False),
])
def test_is_seed_name(name: str, expected: bool) -> None:
    assert is_seed_name(name) is expected


def test_list_seeds_in_name_order(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", ".a.txt", "c.md", "d.rst"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in list_seeds(tmp_path)] == ["a.txt", "b.txt", "c.md"]


def test_read_seed_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"slug\nTitle\n\nBody")
    os.utime(path, (1_700_000_000.7, 1_700_000_000.7))
    seed = read_seed(path)
    assert isinstance(seed, SeedFile)
    assert seed.data == b"slug\nTitle\n\nBody" and seed.mtime == 1_700_000_000
    assert stat_seed(path) == seed.signature


def test_odd_files_are_errors_not_hangs(tmp_path: Path) -> None:
    (tmp_path / "dir.txt").mkdir()
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "big.txt").write_bytes(b"x" * 2000)
    for name, fragment in (("dir.txt", "a folder"), ("fifo.txt", "not a regular file"),
                           ("big.txt", "at most 1000")):
        result = read_seed(tmp_path / name, max_bytes=1000)
        assert isinstance(result, Rejection) and fragment in result.message, name
        assert result.line == 1
    assert isinstance(stat_seed(tmp_path / "fifo.txt"), Rejection)
    assert read_seed(tmp_path / "vanished.txt") is None
    assert stat_seed(tmp_path / "vanished.txt") is None


def test_symlinks_inside_are_followed_and_outside_refused(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "real.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("not for readers")
    (seeds / "inside.txt").symlink_to(seeds / "real.txt")
    (seeds / "outside.txt").symlink_to(tmp_path / "secret.txt")
    (seeds / "loop.txt").symlink_to(seeds / "loop.txt")
    inside = read_seed(seeds / "inside.txt")
    assert isinstance(inside, SeedFile) and inside.data == b"x"
    for check in (stat_seed, read_seed):
        outside = check(seeds / "outside.txt")
        assert isinstance(outside, Rejection)
        assert "outside the seeds folder" in outside.message
        assert isinstance(check(seeds / "loop.txt"), Rejection)


def test_the_folder_is_not_held_open_between_batches(tmp_path: Path) -> None:
    """A descriptor held on the seeds folder would keep an unmount busy ("target is busy")."""
    from feedsvc.ingest.catalog import Catalog

    (tmp_path / "a.txt").write_text("a\nA\n\nBody.")
    catalog = Catalog(tmp_path, 1 << 20)

    def held() -> list[str]:
        return [target for fd in os.listdir("/proc/self/fd")
                if (target := _link(f"/proc/self/fd/{fd}")) == str(tmp_path)]

    list(catalog.scan())
    assert catalog.records["a.txt"].slug == "a" and held() == []
    (tmp_path / "a.txt").write_text("a\nA again\n\nBody.")
    assert "a.txt" in catalog.update([tmp_path / "a.txt"]) and held() == []


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _mount(*args: str) -> None:
    """mount(8) as root, or skip saying why."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    result = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed here: {result.stderr.strip()}")


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def test_a_file_mounted_over_a_seed_name_is_rejected(tmp_path: Path,
                                                      mounts: list[Path]) -> None:
    """A bind mount of a file from another file system (/dev/shm's tmpfs) over a name in the
    folder: not one of the folder's files."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "a.txt").write_bytes(b"slug\nTitle\n\nBody")
    outside = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        (outside / "secret").write_bytes(b"slug\nSecret\n\nBody")
        _mount("--bind", str(outside / "secret"), str(seeds / "a.txt"))
        mounts.append(seeds / "a.txt")
        rejected = read_seed(seeds / "a.txt")
        assert isinstance(rejected, Rejection)
        assert rejected.message == "on another file system than the seeds folder"
    finally:
        for point in mounts:
            subprocess.run(["umount", str(point)], capture_output=True, timeout=30)
        mounts.clear()
        shutil.rmtree(outside)


def test_seeds_on_an_overlay_of_two_file_systems_are_read(tmp_path: Path,
                                                          mounts: list[Path]) -> None:
    """An overlay whose lower layer is on this disk and whose upper layer is a tmpfs (as
    `systemd-nspawn --volatile=overlay`, live systems, some containers): a file reports its
    layer's st_dev, the folder the overlay's. Both the lower layer's seeds and one written
    through the overlay are the folder's own."""
    lower, upper_fs, merged = tmp_path / "lower", tmp_path / "upperfs", tmp_path / "merged"
    for folder in (lower, upper_fs, merged):
        folder.mkdir()
    (lower / "a.txt").write_bytes(b"alpha\nAlpha\n\nBody")
    _mount("-t", "tmpfs", "tmpfs", str(upper_fs))
    mounts.append(upper_fs)
    (upper_fs / "upper").mkdir()
    (upper_fs / "work").mkdir()
    _mount("-t", "overlay", "overlay", "-o",
           f"lowerdir={lower},upperdir={upper_fs / 'upper'},workdir={upper_fs / 'work'}",
           str(merged))
    mounts.append(merged)
    (merged / "b.txt").write_bytes(b"beta\nBeta\n\nBody")
    assert os.stat(merged / "a.txt").st_dev != os.stat(merged).st_dev  # the case at hand
    for name in ("a.txt", "b.txt"):
        seed = read_seed(merged / name)
        assert isinstance(seed, SeedFile), seed
