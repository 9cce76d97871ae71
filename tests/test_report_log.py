"""The publisher's log on a start that finds many seeds: one line for them all, a line each at
debug level; a line per entry otherwise. A real Publisher on real seeds and a real state."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from feedsvc.config import load_config
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.report import LOG_EACH_MAX
from tests.conftest import write_config, write_seed


def seeds(folder: Path, names: range) -> None:
    for i in names:
        write_seed(folder, f"s{i:04d}.txt", f"entree-{i:04d}\nTitre {i}\n\nCorps {i}.")


def published_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("published entree-")]


@pytest.mark.parametrize("verbose", [False, True])
def test_a_first_start_on_many_seeds_says_it_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, verbose: bool) -> None:
    many = LOG_EACH_MAX + 50
    write_config(tmp_path, port=1)
    seeds(tmp_path / "seeds", range(many))
    caplog.set_level(logging.DEBUG if verbose else logging.INFO, logger="feedsvc")
    publisher = Publisher.open(load_config(tmp_path / "config.toml"))
    try:
        publisher.scan()
        messages = "\n".join(r.getMessage() for r in caplog.records)
        assert f"published {many:,} from {tmp_path / 'seeds'} (a line each with --verbose)" \
            in messages
        assert len(published_lines(messages)) == (many if verbose else 0)
        caplog.clear()
        # Running now, not starting: a line per entry, whatever their number.
        seeds(tmp_path / "seeds", range(many, many + 3))
        publisher.update([tmp_path / "seeds" / f"s{i:04d}.txt" for i in range(many, many + 3)])
        messages = "\n".join(r.getMessage() for r in caplog.records)
        assert len(published_lines(messages)) == 3 and "a line each" not in messages
    finally:
        publisher.close()


def test_a_start_on_few_new_seeds_says_each(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    write_config(tmp_path, port=1)
    seeds(tmp_path / "seeds", range(5))
    caplog.set_level(logging.INFO, logger="feedsvc")
    publisher = Publisher.open(load_config(tmp_path / "config.toml"))
    try:
        publisher.scan()
    finally:
        publisher.close()
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert len(published_lines(messages)) == 5 and "a line each" not in messages
