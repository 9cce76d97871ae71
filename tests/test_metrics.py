"""/metrics: a real server with `[server] metrics = true`, scraped and parsed with
prometheus-client's own parser, before and after requests and a dropped seed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServeProcess, copy_sample, seed, wait_until, write_seed
from tests.test_bursts import make_config
from tests.test_disk import big_seeds, fill
from tests.test_disk import tmpfs as tmpfs  # a fixture
from tests.test_websub_hub import hub_site
from tests.test_websub_push import deliveries, subscribe
from tests.test_websub_push import seed as push_seed
from tests.test_websub_push import subscribers as subscribers  # a fixture


def with_metrics(site: Path, config: Path | None = None, on: bool = True) -> Path:
    config = site / "config.toml" if config is None else config
    text = config.read_text("utf-8")
    config.write_text(text.replace("[server]\n", f"[server]\nmetrics = {str(on).lower()}\n"),
                      "utf-8")
    return config


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ServeProcess) -> Samples:
    status, headers, body = server.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert headers["Cache-Control"] == "no-store"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples}


def scrape_until(server: ServeProcess, predicate: Callable[[Samples], bool]) -> Samples:
    samples: list[Samples] = []

    def met() -> bool:
        samples.append(scrape(server))
        return predicate(samples[-1])

    wait_until(met)
    return samples[-1]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples: Samples, route: str, status: int, coding: str = "identity") -> float:
    return value(samples, "feedsvc_http_requests_total", route=route, status=str(status),
                 coding=coding, worker="0")


def test_metrics_count_requests_by_route_status_and_coding_and_follow_a_drop(
        site: Path, serve) -> None:
    copy_sample(site / "seeds")
    server = serve(with_metrics(site))
    before = scrape(server)
    assert value(before, "feedsvc_entries_published") == 1
    assert value(before, "feedsvc_watcher_up") == 1
    assert value(before, "feedsvc_state_writable") == 1
    assert value(before, "feedsvc_state_write_failures_total") == 0
    assert value(before, "feedsvc_render_seconds_count", kind="scan") >= 1
    assert "feedsvc_websub_deliveries_total" not in {name for name, _ in before}

    status, headers, body = server.get("/feed.atom")
    assert status == 200
    etag = headers["ETag"]
    for _ in range(3):
        assert server.get("/feed.atom", {"If-None-Match": etag})[0] == 304
    status, _, gz = server.get("/feed.atom", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert server.get("/no/such/thing")[0] == 404
    after = scrape(server)
    assert requests(after, "/feed.atom", 200) - requests(before, "/feed.atom", 200) == 1
    assert requests(after, "/feed.atom", 304) - requests(before, "/feed.atom", 304) == 3
    assert requests(after, "/feed.atom", 200, "gzip") - requests(before, "/feed.atom", 200,
                                                                 "gzip") == 1
    assert requests(after, "/{tail}", 404) >= 1
    assert requests(after, "/metrics", 200) >= 1  # the first scrape, counted once written
    # Bytes written: the status line and headers (a few hundred bytes), then the body.
    sent = "feedsvc_http_response_bytes_total"
    for coding, size in (("identity", len(body)), ("gzip", len(gz))):
        written = value(after, sent, route="/feed.atom", status="200", coding=coding,
                        worker="0") - value(before, sent, route="/feed.atom", status="200",
                                            coding=coding, worker="0")
        assert size + 100 < written < size + 1000
    assert 300 < value(after, sent, route="/feed.atom", status="304", coding="identity",
                       worker="0") < 3000

    # A dropped seed: one more entry, one more update render, one change-to-swap observed.
    write_seed(site / "seeds", "b.txt", seed("bee", "Bee", "A new entry."))
    wait_until(lambda: value(scrape(server), "feedsvc_entries_published") == 2)
    dropped = scrape(server)
    assert value(dropped, "feedsvc_render_seconds_count", kind="update") > value(
        after, "feedsvc_render_seconds_count", kind="update")
    assert value(dropped, "feedsvc_publish_seconds_count") > value(
        after, "feedsvc_publish_seconds_count")
    assert value(dropped, "feedsvc_renders") > value(after, "feedsvc_renders")
    # A rejected seed, a draft and a scheduled entry move their gauges.
    write_seed(site / "seeds", "bad.txt", b"\xff\xfe not text")
    write_seed(site / "seeds", "later.md", "---\ntitle: Later\ndate: 2999-01-01\n---\n\nSoon.")
    write_seed(site / "seeds", "draft.md", "---\ntitle: Draft\ndraft: true\n---\n\nNot yet.")
    moved = scrape_until(server, lambda s: value(s, "feedsvc_drafts") == 1
                         and value(s, "feedsvc_entries_scheduled") == 1)
    assert value(moved, "feedsvc_seeds_rejected") == 1
    assert value(moved, "feedsvc_entries_published") == 2


def test_state_write_failures_are_counted(tmp_path: Path, tmpfs, serve) -> None:
    """The state on a tmpfs that fills up under a running server: its writes fail, are
    counted, and feedsvc_state_writable drops to 0 (needs root, as test_disk)."""
    statefs = tmpfs("statefs", "2m")
    config = with_metrics(tmp_path, make_config(tmp_path, state=str(statefs / "s.sqlite3")))
    copy_sample(tmp_path / "seeds")
    server = serve(config)
    assert value(scrape(server), "feedsvc_state_write_failures_total") == 0
    fill(statefs)
    big_seeds(tmp_path / "seeds", 40, "full")
    failed = scrape_until(server,
                          lambda s: value(s, "feedsvc_state_write_failures_total") >= 1)
    assert value(failed, "feedsvc_state_writable") == 0
    assert value(failed, "feedsvc_state_pending_writes") > 0


def test_metrics_are_off_by_default(site: Path, serve) -> None:
    server = serve(site / "config.toml")
    status, headers, _ = server.get("/metrics")
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")  # the site's own 404 page
    server.stop()
    server = serve(with_metrics(site, on=False))
    assert server.get("/metrics")[0] == 404


def test_websub_deliveries_are_counted_from_the_ledger(tmp_path: Path, serve,
                                                       subscribers) -> None:
    """The built-in hub: a failing subscriber's attempts, then its delivery, in the counters
    /healthz shows (websub/ledger.py)."""
    server = serve(with_metrics(tmp_path, hub_site(tmp_path)))
    assert value(scrape(server), "feedsvc_websub_deliveries_total", result="delivered") == 0
    failing = subscribers(post_status=500)
    subscribe(server, failing)
    write_seed(tmp_path / "seeds", "b.txt", push_seed("bravo", "Bravo"))
    failed = scrape_until(server, lambda s: value(
        s, "feedsvc_websub_deliveries_total", result="failed_attempt") >= 2)
    assert value(failed, "feedsvc_websub_failing_subscribers") == 1
    failing.post_status = 204
    delivered = scrape_until(server, lambda s: value(
        s, "feedsvc_websub_deliveries_total", result="delivered") == 1)
    assert value(delivered, "feedsvc_websub_failing_subscribers") == 0
    report = deliveries(server)
    assert value(delivered, "feedsvc_websub_deliveries_total",
                 result="failed_attempt") == report["failed_attempts"]


def test_with_workers_each_process_answers_for_itself(site: Path, serve) -> None:
    """`workers = 2`: scrapes reach both processes; each labels its own requests, serves the
    same gauges, and only the leader (worker 0) has the pipeline's histograms."""
    config = with_metrics(site)
    config.write_text(config.read_text("utf-8").replace("[server]\n", "[server]\nworkers = 2\n"),
                      "utf-8")
    copy_sample(site / "seeds")
    server = serve(config)
    seen: dict[str, Samples] = {}

    def both() -> bool:
        samples = scrape(server)
        workers = {dict(labels).get("worker") for name, labels in samples
                   if name == "feedsvc_http_requests_total"}
        own = workers - {None}
        if len(own) == 1:
            seen[own.pop()] = samples
        return len(seen) == 2

    wait_until(both, timeout=30, interval=0.01)
    assert set(seen) == {"0", "1"}
    for samples in seen.values():  # the gauges: from the snapshot each process serves
        assert value(samples, "feedsvc_entries_published") == 1
        assert value(samples, "feedsvc_watcher_up") == 1
    assert value(seen["0"], "feedsvc_render_seconds_count", kind="scan") >= 1
    assert ("feedsvc_render_seconds_count", (("kind", "scan"),)) not in seen["1"]
