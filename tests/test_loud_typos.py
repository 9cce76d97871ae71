"""Loud typos (issue 13): an unknown front-matter key stays publishable, but its warning names
the file, the line and the key meant; /healthz lists the warnings and says `warnings`;
`feedsvc check --strict` exits 1 on any; a rejected seed that is fixed logs one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ServeProcess, run_cli, wait_until, write_seed

TYPO_SEED = "---\ntittle: Première lumière\ndate: 2026-11-24 08:30\n---\n\nfirst-light\n" \
            "Première lumière\n\nLe premier paragraphe.\n"
FIXED_SEED = "---\ntitle: Première lumière\ndate: 2026-11-24 08:30\n---\n\nfirst-light\n\n" \
             "Le premier paragraphe.\n"
TYPO_MESSAGE = "unknown front matter key 'tittle' ignored (did you mean 'title'?)"


def _health(server: ServeProcess) -> dict:
    status, _, body = server.get("/healthz")
    assert status == 200
    return json.loads(body)


def test_healthz_lists_warnings_and_says_warnings(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    seeds = site / "seeds"
    path = write_seed(seeds, "first-light.txt", TYPO_SEED)
    server = serve(site / "config.toml")
    health = wait_until(lambda: (h := _health(server))["entries_published"] == 1 and h)
    assert health["status"] == "warnings"
    assert health["warnings"] == [{"path": str(path), "line": 2, "message": TYPO_MESSAGE}]
    assert (health["warnings_count"], health["warnings_truncated"]) == (1, False)
    assert f"{path}:2: warning: {TYPO_MESSAGE}" in server.log()

    # Bounded, with a count: 104 more seeds with the typo.
    for n in range(104):
        write_seed(seeds, f"t{n:03}.txt", TYPO_SEED.replace("first-light", f"t{n:03}"))
    health = wait_until(lambda: (h := _health(server))["entries_published"] == 105 and h)
    assert health["status"] == "warnings"
    assert len(health["warnings"]) == 100
    assert (health["warnings_count"], health["warnings_truncated"]) == (105, True)
    assert health["warnings"][0]["path"] == str(path)  # by file name

    # Fixed, or gone: no warning any more, and the status is back to ok.
    write_seed(seeds, "first-light.txt", FIXED_SEED)
    for n in range(104):
        (seeds / f"t{n:03}.txt").unlink()
    health = wait_until(lambda: (h := _health(server))["entries_published"] == 1
                        and h["warnings_count"] == 0 and h)
    assert (health["status"], health["warnings"], health["warnings_truncated"]) == (
        "ok", [], False)


def test_check_strict_exits_1_on_a_warning(site: Path) -> None:
    seeds = site / "seeds"
    config = str(site / "config.toml")
    path = write_seed(seeds, "first-light.txt", TYPO_SEED)
    result = run_cli("check", "--config", config, cwd=site)
    assert result.returncode == 0  # a warning is not a rejection…
    assert result.stdout.splitlines() == [
        f"{path}:2: warning: {TYPO_MESSAGE}",
        "1 seeds: 1 publishable now, 0 scheduled, 0 drafts, 0 rejected, 1 warning",
    ]
    strict = run_cli("check", "--strict", "--config", config, cwd=site)
    assert (strict.returncode, strict.stdout) == (1, result.stdout)  # …but --strict fails it

    write_seed(seeds, "first-light.txt", FIXED_SEED)
    strict = run_cli("check", "--strict", "--config", config, cwd=site)
    assert (strict.returncode, strict.stdout) == (
        0, "1 seeds: 1 publishable now, 0 scheduled, 0 drafts, 0 rejected\n")


def test_a_rejected_seed_that_is_fixed_logs_one_line(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    seeds = site / "seeds"
    server = serve(site / "config.toml")
    path = write_seed(seeds, "broken.txt", "broken\nA headline\nno blank line\n")
    wait_until(lambda: _health(server)["seeds_rejected"] == 1)
    rejected = _health(server)["rejected"][0]
    write_seed(seeds, "broken.txt", "broken\nA headline\n\nA body.\n")
    wait_until(lambda: _health(server)["entries_published"] == 1)
    wait_until(lambda: f"{path}: fixed" in server.log())
    fixed = [line for line in server.log().splitlines() if f"{path}: fixed" in line]
    assert len(fixed) == 1
    assert fixed[0].endswith(f"{path}: fixed (was line {rejected['line']}: "
                             f"{rejected['message']})")

    # Deleting a rejected seed does not make it "fixed".
    write_seed(seeds, "other.txt", "")
    wait_until(lambda: _health(server)["seeds_rejected"] == 1)
    (seeds / "other.txt").unlink()
    wait_until(lambda: _health(server)["seeds_rejected"] == 0)
    assert f"{seeds / 'other.txt'}: fixed" not in server.log()
