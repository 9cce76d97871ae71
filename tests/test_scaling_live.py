"""README "Scaling", run by a real systemd and a real nginx: Debian 12 booted in a container
(tests/systemd_boot.py, which puts Debian's nginx-light in the tree), feedsvc installed as
"Running under systemd" says, then the Scaling steps typed as an operator would, in order:
the static path (`[build] on_change`, the `systemctl edit` drop-in, `install -d`, nginx with
deploy/nginx/static.conf), then the proxy path (deploy/nginx/proxy.conf instead).

This file boots its own machine (tests/test_systemd_live.py stays independent); its tests share
it and run in file order. Each names the README commands it runs. Skipped, saying why, where no
systemd can be booted."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import ROOT, SAMPLE_SLUG, seed, wait_until
from .systemd_boot import SOURCE, Machine, booted, install_as_the_readme_says, load_script

pytestmark = pytest.mark.slow

PUBLIC = "/srv/feedsvc/public"
CONFIG = "/etc/feedsvc/config.toml"
#: What `systemctl edit feedsvc` is given to write (README, Scaling, step 1).
DROP_IN = "[Service]\nReadWritePaths=/srv/feedsvc/public\nSupplementaryGroups=www-data\n"
#: The operator's editor for `systemctl edit`: it writes the README's lines into the file
#: systemctl hands it (systemd 252 keeps what is between its markers, or the whole file).
EDITOR = f"#!/bin/sh\ncat > \"$1\" <<'EOF'\n{DROP_IN}EOF\n"


@dataclass
class Live:
    machine: Machine
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    started = time.monotonic()
    seconds: dict[str, float] = {}
    try:
        with booted(tmp_path_factory.mktemp("scaling") / "nspawn.log") as machine:
            seconds["boot"] = time.monotonic() - started
            install_as_the_readme_says(machine, "http://127.0.0.1/")
            seconds["install"] = time.monotonic() - started - seconds["boot"]
            yield Live(machine, seconds)
    finally:
        print(f"scaling live: {live_times(seconds)}")


def scaling_section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    return text.split("\n## Scaling\n", 1)[1].split("\n## ", 1)[0]


def readme(live: Live, command: str, **options: object) -> str:
    """Run `command` as README, Scaling, writes it (it must be there, word for word), from
    the copy of the repository (its deploy/ files)."""
    assert command in scaling_section(), f"not in README, Scaling: {command}"
    return live.machine.run(f"cd {SOURCE} && {command}", **options).stdout  # type: ignore[arg-type]


def live_times(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())


def curl(live: Live, options: str, path: str, port: int = 80) -> str:
    return live.machine.run(f"curl -s {options} {shlex.quote(f'http://127.0.0.1:{port}{path}')}",
                            check=False).stdout


def head(live: Live, path: str, *headers: str) -> dict[str, str]:
    """Status line as "status", header names lower-cased: `curl -sI`."""
    options = " ".join(f"-H {shlex.quote(h)}" for h in headers)
    lines = curl(live, f"-I {options}", path).replace("\r", "").splitlines()
    out = {"status": lines[0].split()[1] if lines else ""}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


def show(live: Live, prop: str, unit: str = "feedsvc") -> str:
    return live.machine.run(f"systemctl show -P {prop} {unit}").stdout.strip()


def messages(live: Live, pid: str) -> list[str]:
    out = live.machine.run(f"journalctl -u feedsvc _PID={pid} -o cat --no-pager").stdout
    return out.splitlines()


def drop_seed(live: Live, name: str, text: str) -> None:
    live.machine.run(f"cat > /srv/feedsvc/{name}.tmp && chmod 0644 /srv/feedsvc/{name}.tmp "
                     f"&& mv /srv/feedsvc/{name}.tmp /srv/feedsvc/seeds/{name}", input=text)


def test_readme_static_output_under_the_unit(live: Live) -> None:
    """Step 1: `[paths] output` and `[build] on_change = true` in /etc/feedsvc/config.toml;
    `systemctl edit feedsvc` (ReadWritePaths=, SupplementaryGroups=www-data);
    `install -d -o root -g www-data -m 2775 /srv/feedsvc/public`; `systemctl restart feedsvc`.
    The site's files appear there, group www-data, readable by nginx's user."""
    machine, started = live.machine, time.monotonic()
    machine.run(f"sed -i 's|^output = .*|output = \"{PUBLIC}\"|' {CONFIG} && "
                f"printf '\\n[build]\\non_change = true\\n' >> {CONFIG}")
    machine.path("/root/editor").write_text(EDITOR)
    machine.run("chmod 0755 /root/editor")
    # systemctl edit refuses to run without a terminal: `script` gives it one.
    edited = machine.run("SYSTEMD_EDITOR=/root/editor script -qec 'systemctl edit feedsvc' "
                         "/dev/null", check=False)
    override = machine.path("/etc/systemd/system/feedsvc.service.d/override.conf")
    assert edited.returncode == 0 and override.exists(), edited
    assert override.read_text().strip() == DROP_IN.strip(), override.read_text()
    assert show(live, "ReadWritePaths") == PUBLIC  # systemctl edit reloaded the manager
    assert show(live, "SupplementaryGroups") == "www-data"
    readme(live, f"install -d -o root -g www-data -m 2775 {PUBLIC}")
    readme(live, "systemctl restart feedsvc")
    assert show(live, "ActiveState") == "active"
    main = show(live, "MainPID")
    wait_until(lambda: any(m.startswith(f"static output {PUBLIC}: ")
                           for m in messages(live, main)), timeout=60, interval=0.2)
    listed = machine.run(f"ls {PUBLIC}").stdout.split()
    for name in ("404.html", "entries", "feed.atom", "feed.json", "index.html", "sitemap.xml"):
        assert name in listed, listed
    # Every file and folder the service wrote: group www-data (the folder's setgid), and
    # readable by www-data (nginx's workers).
    owners = machine.run(f"find {PUBLIC} -mindepth 1 ! -group www-data -printf '%p %g\\n'")
    assert owners.stdout == "", owners.stdout
    machine.run(f"runuser -u www-data -- cat {PUBLIC}/feed.atom {PUBLIC}/entries/"
                f"{SAMPLE_SLUG}/index.html > /dev/null")
    unreadable = machine.run(f"find {PUBLIC} -mindepth 1 ! -perm -g+r -printf '%p\\n'")
    assert unreadable.stdout == "", unreadable.stdout
    live.seconds["static output"] = time.monotonic() - started


BUILD_AS_THE_SERVICE = (
    "systemd-run --wait --pipe --quiet -p DynamicUser=yes -p User=feedsvc "
    "-p StateDirectory=feedsvc -p ReadWritePaths=/srv/feedsvc/public "
    "-p SupplementaryGroups=www-data "
    "/opt/feedsvc/venv/bin/feedsvc build --config /etc/feedsvc/config.toml")


def test_readme_build_once_as_the_service_user(live: Live) -> None:
    """Step 1's other way, `feedsvc build` as the user that owns the state: under
    DynamicUser=, a transient unit with the same dynamic user (User=feedsvc), state folder and
    drop-in lines. With `serve` having written the same site, it writes nothing; every file
    stays the service's, group www-data."""
    machine, started = live.machine, time.monotonic()
    assert BUILD_AS_THE_SERVICE in scaling_section()
    built = machine.run(BUILD_AS_THE_SERVICE, check=False)
    said = built.stdout + built.stderr
    assert built.returncode == 0, said
    assert re.search(rf"wrote the site to {PUBLIC}: 0 files written, 0 redated, \d+ "
                     r"unchanged, 0 removed", said), said
    listed = readme(live, f"ls {PUBLIC}")
    assert "index.html" in listed and "sitemap.xml" in listed
    strangers = machine.run(f"find {PUBLIC} /var/lib/private/feedsvc -user root "
                            f"-mindepth 1 -printf '%p\\n'")
    assert strangers.stdout == "", strangers.stdout
    live.seconds["build once"] = time.monotonic() - started


def test_readme_nginx_serves_the_static_output(live: Live) -> None:
    """Step 2: `apt-get install nginx-light`; static.conf into sites-available, linked from
    sites-enabled; `nginx -t && systemctl reload nginx`; the README's curl."""
    machine, started = live.machine, time.monotonic()
    readme(live, "apt-get install nginx-light")  # in the tree already: nothing to fetch
    readme(live, "install -m 0644 deploy/nginx/static.conf /etc/nginx/sites-available/feedsvc")
    readme(live, "ln -sf /etc/nginx/sites-available/feedsvc /etc/nginx/sites-enabled/feedsvc")
    readme(live, "rm -f /etc/nginx/sites-enabled/default")
    readme(live, "nginx -t && systemctl reload nginx")
    # `systemctl reload nginx` returns once the signal is sent: for a moment the old workers
    # (Debian's welcome site, answering 404) still answer.
    said = wait_until(lambda: (out := readme(
        live, "curl -sI -H 'Accept-Encoding: gzip' http://127.0.0.1/feed.atom")).startswith(
        "HTTP/1.1 200") and out, timeout=15, interval=0.2)
    assert "Content-Encoding: gzip" in said and "ETag: " in said and "Vary: " in said, said
    atom = head(live, "/feed.atom", "Accept-Encoding: gzip")
    assert atom["status"] == "200", atom
    assert atom["content-encoding"] == "gzip" and atom["vary"] == "Accept-Encoding", atom
    assert atom["content-type"] == "application/xml; charset=utf-8", atom
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', atom["etag"]), atom
    gz = machine.path(f"{PUBLIC}/feed.atom.gz").stat()
    assert atom["content-length"] == str(gz.st_size), (atom, gz.st_size)
    plain = curl(live, "", "/feed.atom")
    assert plain.encode() == machine.path(f"{PUBLIC}/feed.atom").read_bytes()
    assert SAMPLE_SLUG in plain
    front = head(live, "/")
    assert front["status"] == "200" and front["content-type"] == "text/html; charset=utf-8"
    page = head(live, f"/entries/{SAMPLE_SLUG}")
    assert page["status"] == "200", page
    # An unknown path: the site's 404 page, with 404.
    missing_page = curl(live, "-w '\\n%{http_code}'", "/no/such/page")
    body, _, code = missing_page.rpartition("\n")
    assert code == "404" and body == machine.path(f"{PUBLIC}/404.html").read_text(), code
    live.seconds["nginx static"] = time.monotonic() - started


def test_etags_stay_across_a_restart_and_a_dropped_seed_shows(live: Live) -> None:
    """`systemctl restart feedsvc` with nothing changed: its first write compares and writes
    nothing, so nginx's ETag (mtime-size) is the same. A dropped seed then shows through
    nginx, and the pages it does not change keep their ETag."""
    machine, started = live.machine, time.monotonic()
    before = {p: head(live, p, "Accept-Encoding: gzip")["etag"]
              for p in ("/feed.atom", f"/entries/{SAMPLE_SLUG}")}
    machine.run("systemctl restart feedsvc")
    main = show(live, "MainPID")
    time.sleep(3)  # the first write after a start: everything rendered and compared
    after = {p: head(live, p, "Accept-Encoding: gzip")["etag"] for p in before}
    assert after == before
    assert not any("static output" in m for m in messages(live, main)), messages(live, main)
    drop_seed(live, "scaled.txt", seed("scaled-by-nginx", "Servi par nginx", "Un corps."))
    wait_until(lambda: "scaled-by-nginx" in curl(live, "", "/feed.atom"), timeout=30,
               interval=0.2)
    assert head(live, "/entries/scaled-by-nginx")["status"] == "200"
    assert head(live, f"/entries/{SAMPLE_SLUG}", "Accept-Encoding: gzip")["etag"] == \
        before[f"/entries/{SAMPLE_SLUG}"]
    assert head(live, "/feed.atom", "Accept-Encoding: gzip")["etag"] != before["/feed.atom"]
    said = messages(live, main)
    assert any(re.match(rf"static output {PUBLIC}: \d+ files written", m) for m in said), said
    live.seconds["restart and seed"] = time.monotonic() - started
def test_readme_proxy_cache_in_front_of_serve(live: Live) -> None:
    """The proxy path: `install -d -o www-data -m 0700 /var/cache/nginx/feedsvc`, proxy.conf
    instead of static.conf, `nginx -t && systemctl reload nginx`; X-Cache-Status MISS, then
    HIT; `systemctl restart feedsvc` three times while 4 clients poll through nginx: no 502."""
    machine, started = live.machine, time.monotonic()
    readme(live, "install -d -o www-data -m 0700 /var/cache/nginx/feedsvc")
    readme(live, "install -m 0644 deploy/nginx/proxy.conf /etc/nginx/sites-available/feedsvc")
    readme(live, "ln -sf /etc/nginx/sites-available/feedsvc /etc/nginx/sites-enabled/feedsvc")
    readme(live, "nginx -t && systemctl reload nginx")
    wait_until(lambda: "X-Cache-Status" in curl(live, "-I", "/index.html"), timeout=15,
               interval=0.2)  # the new workers (see above)
    statuses = [readme(live, "curl -s -o /dev/null -D - http://127.0.0.1/feed.atom | grep -i "
                             "x-cache-status").split()[-1] for _ in range(2)]
    assert statuses == ["MISS", "HIT"], statuses
    # Copies stale after 1 s (`[server] cache_max_age`, applied by a reload), so that
    # nginx asks feedsvc again and again while it restarts and while it is down.
    machine.run(f"sed -i 's|^cache_max_age = .*|cache_max_age = 1|' {CONFIG} && "
                "systemctl reload feedsvc")
    wait_until(lambda: "max-age=1" in curl(live, "-I", "/feed.atom", port=8080), timeout=30)
    machine.path("/root/load.py").write_text(load_script(80, cache_status=True))
    before = show(live, "MainPID")
    out = machine.run(
        "rm -f /run/feedsvc-load-stop; python3 /root/load.py > /root/load.json & "
        "sleep 2; for i in 1 2 3; do systemctl restart feedsvc; systemctl show -P MainPID "
        "feedsvc; sleep 2; done; systemctl stop feedsvc.socket feedsvc; sleep 3; "
        "systemctl start feedsvc.socket feedsvc; sleep 2; touch /run/feedsvc-load-stop; wait; "
        "cat /root/load.json", timeout=300).stdout.splitlines()
    pids, counts = out[:3], json.loads(out[3])
    assert len({before, *pids}) == 4, (before, pids)
    print(f"restarts and a stop behind proxy.conf: {counts}")
    assert all(key.startswith("ok ") for key in counts), counts  # no 502, nothing refused
    assert counts.get("ok STALE", 0) > 0, counts  # feedsvc down: the last copy
    assert sum(n for key, n in counts.items() if key in ("ok EXPIRED", "ok REVALIDATED",
                                                           "ok UPDATING")) > 0, counts
    # A new entry shows within cache_max_age (plus the request that updates the copy).
    drop_seed(live, "proxied.txt", seed("proxied-by-nginx", "Par le cache", "Un corps."))
    # (Asked as the clients above asked: http.client sends `Accept-Encoding: identity`, a
    # copy of its own under feedsvc's Vary, cached since the reload. curl's copy, without the
    # header, came before it with max-age=60.)
    wait_until(lambda: "proxied-by-nginx" in curl(live, "-H 'Accept-Encoding: identity'",
                                                  "/feed.atom"), timeout=30, interval=0.5)
    live.seconds["proxy"] = time.monotonic() - started
