"""The built-in hub's pure rules, table-driven: subscription request validation (W3C WebSub
§5.1), the callback address classifier (no requests into the operator's network), the
verification URL (§5.1.1), the rate limit; and the subscriptions' storage on a real SQLite
state file."""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
from pathlib import Path
from urllib.parse import urlencode

import pytest

from feedsvc.config import Config, WebSubConfig, load_config
from feedsvc.errors import ConfigError, FeedsvcError
from feedsvc.serve.websub.callbacks import (
    CallbackError,
    UnsafeCallback,
    check_callback,
    unsafe_reason,
)
from feedsvc.serve.websub.hub import MAX_CLIENTS, RateLimit
from feedsvc.serve.websub.requests import (
    BadRequest,
    check_content_type,
    decode_unreserved,
    parse_request,
)
from feedsvc.serve.websub.verify import with_query
from feedsvc.state.store import Store
from feedsvc.state.subscriptions import SQLiteSubscriptions, Subscription

BASE = "http://feeds.example/"
CB = "https://sub.example/cb"


@pytest.fixture
def hub_config(config: Config) -> Config:
    feed = config.feed.__class__(**{**config.feed.__dict__, "base_url": BASE})
    return Config(feed=feed, paths=config.paths, server=config.server, watch=config.watch,
                  websub=WebSubConfig(builtin_hub=True, lease_min_s=100, lease_default_s=1000,
                                      lease_max_s=5000))


def form(**fields: str | None) -> bytes:
    base = {"hub.mode": "subscribe", "hub.topic": BASE + "feed.atom", "hub.callback": CB}
    base.update({k.replace("_", ".", 1): v for k, v in fields.items()})
    return urlencode({k: v for k, v in base.items() if v is not None}).encode()


GOOD = [
    # (fields, expected (mode, path, callback, secret, lease))
    ({}, ("subscribe", "/feed.atom", CB, None, 1000)),
    ({"hub_lease_seconds": "10"}, ("subscribe", "/feed.atom", CB, None, 100)),  # clamped up
    ({"hub_lease_seconds": "99999999"}, ("subscribe", "/feed.atom", CB, None, 5000)),  # down
    ({"hub_lease_seconds": "2000"}, ("subscribe", "/feed.atom", CB, None, 2000)),
    ({"hub_secret": "k" * 199}, ("subscribe", "/feed.atom", CB, b"k" * 199, 1000)),
    ({"hub_secret": "é" * 99}, ("subscribe", "/feed.atom", CB, "é".encode() * 99, 1000)),
    ({"hub_secret": ""}, ("subscribe", "/feed.atom", CB, None, 1000)),
    # Unsubscribe: lease and secret ignored (§5.1).
    ({"hub_mode": "unsubscribe", "hub_lease_seconds": "x", "hub_secret": "s"},
     ("unsubscribe", "/feed.atom", CB, None, 0)),
    ({"hub_topic": BASE + "tags/x.json"}, ("subscribe", "/tags/x.json", CB, None, 1000)),
    ({"hub_topic": BASE + "archive/50/2.rss"},
     ("subscribe", "/archive/50/2.rss", CB, None, 1000)),
    # §5.1.1: unreserved characters decoded; reserved ones kept encoded.
    ({"hub_topic": BASE + "feed%2Eatom", "hub_callback": "https://sub.example/%7Eme%2Fx"},
     ("subscribe", "/feed.atom", "https://sub.example/~me%2Fx", None, 1000)),
    ({"hub_callback": "http://sub.example:8080/cb?a=1&b=2"},
     ("subscribe", "/feed.atom", "http://sub.example:8080/cb?a=1&b=2", None, 1000)),
    ({"other": "ignored", "hub_unknown": "ignored"}, ("subscribe", "/feed.atom", CB, None, 1000)),
]


@pytest.mark.parametrize(("fields", "expected"), GOOD)
def test_good_requests(hub_config: Config, fields: dict[str, str], expected: tuple) -> None:
    r = parse_request(hub_config, form(**fields))
    assert (r.mode, r.path, r.callback, r.secret, r.lease_s) == expected


BAD = [
    ({"hub_mode": None}, 400, "hub.mode is missing"),
    ({"hub_mode": "Subscribe"}, 400, "hub.mode must be"),
    ({"hub_mode": "publish"}, 400, "no publish ping"),
    ({"hub_topic": None}, 400, "hub.topic is missing"),
    ({"hub_topic": "https://feeds.example/feed.atom"}, 400, "not a feed of this service"),
    ({"hub_topic": BASE + "feed.atom?x=1"}, 400, "not a feed"),
    ({"hub_topic": BASE + "entries/a"}, 400, "not a feed"),
    ({"hub_topic": BASE + "feed.html"}, 400, "not a feed"),
    ({"hub_callback": None}, 400, "hub.callback is missing"),
    ({"hub_callback": ""}, 400, "empty"),
    ({"hub_callback": "mailto:a@b.example"}, 400, "http or https"),
    ({"hub_callback": "//sub.example/cb"}, 400, "http or https"),
    ({"hub_callback": "http:///cb"}, 400, "no host"),
    ({"hub_callback": "http://sub.example:99999/cb"}, 400, "not a URL"),
    ({"hub_callback": "http://[::1/cb"}, 400, "not a URL"),
    ({"hub_callback": "http://u:p@sub.example/cb"}, 400, "user name"),
    ({"hub_callback": "http://sub.example/cb#frag"}, 400, "fragment"),
    ({"hub_callback": "http://sub.example/c b"}, 400, "spaces"),
    ({"hub_callback": "http://sub.example/" + "x" * 2100}, 400, "over 2048"),
    ({"hub_secret": "k" * 200}, 400, "less than 200 bytes"),
    ({"hub_secret": "é" * 100}, 400, "less than 200 bytes"),
    ({"hub_lease_seconds": "0"}, 400, "positive decimal integer"),
    ({"hub_lease_seconds": "-1"}, 400, "positive decimal integer"),
    ({"hub_lease_seconds": "+5"}, 400, "positive decimal integer"),
    ({"hub_lease_seconds": "1e3"}, 400, "positive decimal integer"),
    ({"hub_lease_seconds": "١٢"}, 400, "positive decimal integer"),  # Arabic-Indic digits
]


@pytest.mark.parametrize(("fields", "status", "reason"), BAD)
def test_bad_requests(hub_config: Config, fields: dict[str, str | None], status: int,
                      reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(hub_config, form(**fields))
    assert caught.value.status == status and reason in caught.value.reason
    assert isinstance(caught.value, FeedsvcError)


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"hub.mode=subscribe&hub.mode=unsubscribe", 400, "more than once"),
    (b"hub.mode=%FF", 400, "UTF-8"),
    (b"\xff", 400, "UTF-8"),
    (b"x=" + b"y" * 20_000, 413, "over"),
])
def test_bad_bodies(hub_config: Config, body: bytes, status: int, reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(hub_config, body)
    assert caught.value.status == status and reason in caught.value.reason


@pytest.mark.parametrize(("content_type", "ok"), [
    ("application/x-www-form-urlencoded", True),
    ("Application/X-WWW-Form-URLEncoded; charset=UTF-8", True),
    ("application/json", False), ("multipart/form-data; boundary=x", False), (None, False),
])
def test_content_type(content_type: str | None, ok: bool) -> None:
    if ok:
        check_content_type(content_type)
    else:
        with pytest.raises(BadRequest) as caught:
            check_content_type(content_type)
        assert caught.value.status == 415


def test_decode_unreserved() -> None:
    assert decode_unreserved("a%41%7e%2F%20%2e") == "aA~%2F%20."


ADDRESSES = [
    ("93.184.216.34", None), ("2606:2800:220:1:248:1893:25c8:1946", None), ("8.8.8.8", None),
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("100.64.0.1", "not public"),  # shared address space (carrier-grade NAT)
    ("192.0.2.1", "private"),  # documentation (TEST-NET-1)
    # IPv6 carrying an IPv4 address: judged by it.
    ("::ffff:127.0.0.1", "loopback (in ::ffff:7f00:1)"),
    ("::ffff:10.0.0.1", "private (in ::ffff:a00:1)"),
    ("::ffff:93.184.216.34", None),
    ("64:ff9b::7f00:1", "loopback (in 64:ff9b::7f00:1)"),
    ("64:ff9b::a9fe:a9fe", "link-local (in 64:ff9b::a9fe:a9fe)"),
    ("2002:7f00:1::", "loopback (in 2002:7f00:1::)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo tunnel"),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES)
def test_address_classifier(address: str, reason: str | None) -> None:
    assert unsafe_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(("callback", "refused"), [
    ("http://127.0.0.1:9/cb", "loopback"), ("http://[::1]/cb", "loopback"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("http://localhost:9/cb", "loopback"),  # a name: resolved, every address judged
    ("http://2130706433/cb", "loopback"),  # 127.0.0.1 written as one number
    ("http://0x7f.1/cb", "loopback"),
    ("http://93.184.216.34/cb", None),
])
def test_check_callback(callback: str, refused: str | None) -> None:
    run = asyncio.run
    if refused is None:
        run(check_callback(callback))
    else:
        with pytest.raises(UnsafeCallback, match=refused):
            run(check_callback(callback))
    run(check_callback(callback, allow_private=True))  # allowed: nothing refused


def test_check_callback_refuses_what_is_not_a_callback() -> None:
    for callback in ("ftp://93.184.216.34/", "http:///x", "http://[::1/"):
        with pytest.raises(CallbackError):
            asyncio.run(check_callback(callback, allow_private=True))


@pytest.mark.parametrize(("callback", "url"), [
    ("http://s.example/cb", "http://s.example/cb?hub.mode=subscribe&hub.challenge=c%2F"),
    ("http://s.example/cb?", "http://s.example/cb?hub.mode=subscribe&hub.challenge=c%2F"),
    # §5.1.1: the callback's query is kept, even a parameter named as ours; ours follow.
    ("http://s.example/cb?hub.mode=x&a=1",
     "http://s.example/cb?hub.mode=x&a=1&hub.mode=subscribe&hub.challenge=c%2F"),
])
def test_verification_url_keeps_the_callback_query(callback: str, url: str) -> None:
    assert with_query(callback, {"hub.mode": "subscribe", "hub.challenge": "c/"}) == url


def test_rate_limit_token_bucket() -> None:
    now = [0.0]
    limit = RateLimit(3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b")  # per address
    now[0] += 20.0  # one token back per 20 s at 3 a minute
    assert [limit.allow("a"), limit.allow("a")] == [True, False]
    for n in range(MAX_CLIENTS + 10):  # memory stays bounded
        limit.allow(f"c{n}")
    assert len(limit._buckets) == MAX_CLIENTS


def test_storage_subscribe_renew_expire_failing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    storage = SQLiteSubscriptions.open(path)
    a = Subscription("t1", "http://a.example/cb", b"k", expires_us=1000)
    b = Subscription("t1", "http://B.example/cb", None, expires_us=3000)
    c = Subscription("t2", "http://a.example/x", None, expires_us=3000)
    for s in (a, b, c):
        storage.subscribe(s)
    assert storage.active("t1", 500) == [b, a]  # by callback
    assert storage.active("t1", 1000) == [b]  # expired at its lease's end
    renewed = Subscription("t1", "http://a.example/cb", None, expires_us=5000)
    storage.subscribe(renewed)  # same topic and callback: replaced, secret included
    assert storage.active("t1", 1000) == [b, renewed]
    assert storage.count_topic("t1", 0) == 2 and storage.count_host("a.example", 0) == 2
    assert storage.count_host("b.example", 0) == 1  # hosts compare lowercased
    storage.failing("t1", b.callback, 42)
    assert storage.get("t1", b.callback, 0).failing_since_us == 42
    storage.failing("t1", b.callback, None)
    assert storage.get("t1", b.callback, 0).failing_since_us is None
    assert storage.per_topic(0, 10) == (3, [("t1", 2), ("t2", 1)])
    assert storage.expire(3000) == 2 and storage.active("t1", 0) == [renewed]
    assert storage.unsubscribe("t1", renewed.callback) is True
    assert storage.unsubscribe("t1", renewed.callback) is False
    storage.close()
    # Survives a reopen; `feedsvc check`'s read-only view of it.
    reader = SQLiteSubscriptions.open_for_reading(path)
    assert list(reader.all_active(0)) == []
    reader.close()


def test_storage_subscribe_within_bounds(tmp_path: Path) -> None:
    storage = SQLiteSubscriptions.open(tmp_path / "state.sqlite3")

    def sub(topic: str, callback: str, expires: int = 100) -> Subscription:
        return Subscription(topic, callback, None, expires_us=expires)

    assert storage.subscribe_within(sub("t", "http://a.example/1"), 0, 2, 3) is None
    assert storage.subscribe_within(sub("t", "http://a.example/2"), 0, 2, 3) is None
    assert "topic has its maximum of 2" in storage.subscribe_within(
        sub("t", "http://b.example/3"), 0, 2, 3)
    assert storage.over_bounds("t", "http://b.example/3", 0, 2, 3) is not None
    # A renewal passes; an expired one no longer counts.
    assert storage.subscribe_within(sub("t", "http://a.example/1", 200), 0, 2, 3) is None
    assert storage.over_bounds("t", "http://a.example/1", 0, 2, 3) is None
    assert storage.subscribe_within(sub("t", "http://b.example/3", 300), 150, 2, 3) is None
    assert storage.subscribe_within(sub("u", "http://a.example/4"), 0, 2, 3) is None
    assert "a.example have their maximum of 3" in storage.subscribe_within(
        sub("v", "http://A.example/5"), 0, 2, 3)
    assert [s.callback for s in storage.active("t", 150)] == ["http://a.example/1",
                                                              "http://b.example/3"]
    storage.close()


def test_the_state_schema_has_the_table_and_the_pipeline_writes_meanwhile(
        tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store.open(path)  # creates it, as the pipeline does
    tables = {row[0] for row in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "websub_subscriptions" in tables
    storage = SQLiteSubscriptions.open(path)
    store.setdefault_meta("k", "v")  # the pipeline's connection writes too
    storage.subscribe(Subscription("t", "http://a.example/", None, expires_us=10))
    assert storage.active("t", 0)[0].expires_us == 10
    store.close()
    storage.close()


def test_reading_a_state_without_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE meta (key TEXT)").connection.close()
    reader = SQLiteSubscriptions.open_for_reading(path)
    assert list(reader.all_active(0)) == [] and reader.per_topic(0, 5) == (0, [])
    reader.close()


def test_storage_follows_a_state_file_written_back(tmp_path: Path) -> None:
    """The state deleted and written back (store.py `_restore`), or repaired, while the hub
    runs: later subscriptions go into the file at the path, not the unlinked one."""
    path = tmp_path / "state.sqlite3"
    storage = SQLiteSubscriptions.open(path)
    storage.subscribe(Subscription("t", "http://a.example/1", None, expires_us=10))
    copy = sqlite3.connect(tmp_path / "copy.sqlite3")
    source = sqlite3.connect(path)
    source.backup(copy)
    source.close()
    copy.close()
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):  # `rm state.sqlite3*`
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "copy.sqlite3").rename(path)  # written back
    storage.subscribe(Subscription("t", "http://a.example/2", None, expires_us=10))
    storage.close()
    reader = SQLiteSubscriptions.open_for_reading(path)
    assert [s.callback for s in reader.all_active(0)] == ["http://a.example/1",
                                                          "http://a.example/2"]
    reader.close()


@pytest.mark.parametrize(("value", "ok"), [(1, True), (60, True), (0, False)])
def test_lease_min_s_may_be_short(site: Path, value: int, ok: bool) -> None:
    """§5.3.1 forbids perpetual leases, not short ones: from 1 s (tests see leases expire)."""
    config = site / "config.toml"
    with config.open("a", encoding="utf-8") as f:
        f.write(f"\n[websub]\nbuiltin_hub = true\nlease_min_s = {value}\n")
    if ok:
        assert load_config(config).websub.lease_min_s == value
    else:
        with pytest.raises(ConfigError, match="lease_min_s"):
            load_config(config)
