"""`/metrics` in the Prometheus text format (`[server] metrics = true`), from a registry of
our own (prometheus-client's global one holds whatever other libraries register).

The hot path pays one dictionary update per request, nothing else: aiohttp calls its access
logger once a response is written, and `CountingAccessLogger.log` adds 1 and the bytes written
to a plain dict keyed by (route, status, coding). prometheus-client's own Counter would take a
lock and look its labels up at every request; here the dict is read only when /metrics is
scraped, by `RequestCollector`. Everything else is read at scrape time too: the gauges from
the current snapshot and health status (what /healthz answers), the WebSub deliveries from the
deliverer's ledger (through the health status). The pipeline's durations are histograms
observed once per batch (`PipelineMetrics`), off the request path.

With `[server] workers` > 1 each process answers for itself (a scrape reaches one of them,
chosen by the kernel's SO_REUSEPORT): its own requests, labelled `worker` (0 is the leader);
the gauges, which every process has from the snapshot the leader sends it; and the pipeline's
histograms and write failures in the leader (worker="0") only. See README, "Metrics".
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.hdrs import CONTENT_ENCODING
from aiohttp.web_log import AccessLogger
from aiohttp.web_urldispatcher import AbstractRoute
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from feedsvc.publish.snapshot import Live
from feedsvc.serve.health import LiveHealth

#: The classic text format (0.0.4), which every Prometheus and agent reads; prometheus-client
#: 0.22+ calls its output 1.0.0, the same bytes for names like ours.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The route label of a request no route matched (a method no route takes: 405).
NO_ROUTE = "(none)"
#: Buckets of the durations, in seconds: a single-seed change takes milliseconds, a full scan of
#: 100,000 seeds about a minute.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, float("inf"))

#: (route, status, Content-Encoding or None) -> [requests, bytes written: head and body]
Counts = dict[tuple[AbstractRoute | None, int, str | None], list[int]]


class PipelineMetrics:
    """The leader's pipeline reports here once per batch."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.render = Histogram(
            "feedsvc_render_seconds",
            "Time the pipeline spent reading, parsing, rendering and writing the state for a "
            "batch (kind: scan for a full scan of the folder, update for the watcher's files)",
            ["kind"], registry=registry, buckets=DURATION_BUCKETS)
        self.publish = Histogram(
            "feedsvc_publish_seconds",
            "Time from the watcher reporting a change to the new snapshot being served "
            "(waiting behind a render in progress included)",
            registry=registry, buckets=DURATION_BUCKETS)

    def swapped(self, kind: str, started: float, seen: float | None, now: float) -> None:
        """A batch's snapshot is served at `now` (loop time): rendered since `started`, and
        announced by the watcher at `seen` (None: no watcher change, a rescan)."""
        self.render.labels(kind).observe(now - started)
        if seen is not None:
            self.publish.observe(now - seen)


class Metrics:
    """One process's registry: its requests, the gauges, the pipeline's histograms."""

    def __init__(self, live: Live, health: LiveHealth, worker: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests: Counts = {}
        self.worker = str(worker)
        self.registry.register(RequestCollector(self.requests, self.worker))
        self.registry.register(ServiceCollector(live, health))
        ProcessCollector(registry=self.registry)  # CPU, memory, descriptors of this process
        self.pipeline = PipelineMetrics(registry=self.registry) if worker == 0 else None

    def access_logger(self, access_log: logging.Logger | None) -> dict[str, Any]:
        """aiohttp's runner arguments that count every request (and log it too when
        `[server] access_log` is on)."""
        counting = type("AppCountingAccessLogger", (CountingAccessLogger,),
                        {"counts": self.requests, "logs": access_log is not None})
        return {"access_log": access_log or logging.getLogger("aiohttp.access"),
                "access_log_class": counting}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class CountingAccessLogger(AbstractAccessLogger):
    """Made per connection by aiohttp; `counts` and `logs` are set on a subclass per app."""

    counts: ClassVar[Counts]
    logs: ClassVar[bool]

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._inner = AccessLogger(logger, log_format) if self.logs else None

    @property
    def enabled(self) -> bool:
        return True  # else aiohttp never calls log()

    def log(self, request: Any, response: web.StreamResponse, time: float) -> None:
        # The route object itself is the key (its pattern is looked up at scrape time):
        # two attribute reads fewer per request. None: a request aiohttp refused (400).
        match = request._match_info
        key = (match.route if match is not None else None, response.status,
               response.headers.get(CONTENT_ENCODING))
        entry = self.counts.get(key)
        if entry is None:
            entry = self.counts[key] = [0, 0]
        entry[0] += 1
        entry[1] += response.body_length
        if self._inner is not None:
            self._inner.log(request, response, time)


class RequestCollector(Collector):
    def __init__(self, counts: Counts, worker: str) -> None:
        self._counts = counts
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "status", "coding", "worker"]
        requests = CounterMetricFamily(
            "feedsvc_http_requests", "HTTP requests answered, by route (the route's pattern), "
            "status and content coding", labels=labels)
        sent = CounterMetricFamily(
            "feedsvc_http_response_bytes", "Bytes of responses written to the socket: status "
            "line, headers and body after content coding (as nginx's $bytes_sent), by route, "
            "status and coding", labels=labels)
        totals: dict[tuple[str, str, str], list[int]] = {}
        for (route, status, coding), (count, size) in list(self._counts.items()):
            resource = route.resource if route is not None else None
            key = (resource.canonical if resource is not None else NO_ROUTE, str(status),
                   coding or "identity")
            total = totals.setdefault(key, [0, 0])
            total[0] += count
            total[1] += size
        for (route, status, coding), (count, size) in sorted(totals.items()):
            values = [route, status, coding, self._worker]
            requests.add_metric(values, count)
            sent.add_metric(values, size)
        yield requests
        yield sent


class ServiceCollector(Collector):
    """The gauges /healthz reports, read from the snapshot and health status being served."""

    def __init__(self, live: Live, health: LiveHealth) -> None:
        self._live = live
        self._health = health

    def collect(self) -> Iterator[Metric]:
        snapshot, status = self._live.current, self._health.current
        for name, text, value in (
            ("feedsvc_entries_published", "Entries published (dated now or earlier)",
             snapshot.published_count),
            ("feedsvc_seeds_rejected", "Seed files rejected (see /healthz or feedsvc check)",
             len(snapshot.rejected)),
            ("feedsvc_entries_scheduled", "Entries dated in the future, not published yet",
             len(snapshot.scheduled)),
            ("feedsvc_drafts", "Seeds marked draft", snapshot.draft_count),
            ("feedsvc_seed_warnings", "Seeds published with a warning", len(snapshot.warnings)),
            ("feedsvc_watcher_up", "1 while the seeds folder is watched, 0 while the watch is "
             "down and retried", int(status.watching)),
            ("feedsvc_seeds_folder_readable", "1 while the seeds folder can be read",
             int(snapshot.seeds_readable)),
            ("feedsvc_state_writable", "1 while the state file can be written",
             int(status.state_problem is None)),
            ("feedsvc_state_pending_writes", "Changes waiting to be written to the state",
             status.pending_writes),
            ("feedsvc_renders", "Snapshots rendered since start", snapshot.generation),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        failures = CounterMetricFamily(
            "feedsvc_state_write_failures", "Writes of the state that failed since start (each "
            "is retried; see feedsvc_state_writable)", value=status.write_failures)
        yield failures
        report = status.deliveries
        if report is not None:  # the built-in WebSub hub's deliverer (websub/ledger.py)
            deliveries = CounterMetricFamily(
                "feedsvc_websub_deliveries", "The built-in hub's content distribution since "
                "start, by result (WebSub §7)", labels=["result"])
            for result, value in (("delivered", report.delivered),
                                  ("failed_attempt", report.failed_attempts),
                                  ("given_up", report.given_up), ("gone", report.gone)):
                deliveries.add_metric([result], value)
            yield deliveries
            yield GaugeMetricFamily("feedsvc_websub_failing_subscribers",
                                    "Subscribers whose deliveries fail now",
                                    value=report.failing_count)


async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: this process's metrics (a few KB, made in well under a millisecond)."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE,
                                            "Cache-Control": "no-store"})


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")


def worker_number() -> int:
    """The process's worker number (0: the leader), from its name (cli.serve_with_workers)."""
    name = multiprocessing.current_process().name
    return int(name.rsplit("-", 1)[1]) if name.startswith("feedsvc-worker-") else 0
