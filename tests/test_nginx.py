"""deploy/nginx/static.conf and proxy.conf, run by a real nginx (Debian's nginx-light; `.ci/run`
installs it): the static site `build` writes, served with the bytes, types, ETags and 304s
feedsvc gives; and nginx's cache in front of `serve`, answering while serve is down and
showing a new entry once its copy's age has passed."""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, ServeProcess, free_port, http_get, wait_until, write_seed
from .test_static_build import ROUTES, _build, _site

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run "
                          "installs it when run as root)")

DEPLOY = ROOT / "deploy" / "nginx"


class Nginx:
    """nginx in the foreground on a free loopback port, everything it writes in `folder`."""

    def __init__(self, folder: Path, site: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("listen [::]:80;", "")
        (folder / "site.conf").write_text(site, "utf-8")
        temp = "\n".join(f"    {kind}_temp_path {folder}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""  # the test's files are 0700
        (folder / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
            f"error_log {folder}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n"
            f"    default_type application/octet-stream;\n    access_log off;\n{temp}\n"
            f"    include {folder}/site.conf;\n}}\n", "utf-8")
        command = [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"),
                   "-e", str(folder / "error.log")]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._up, timeout=15)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError((self.folder / "error.log").read_text())
        try:
            http_get(self.url + "/")
            return True
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, headers)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
def nginx() -> Iterator[Callable[[Path, str], Nginx]]:
    started: list[Nginx] = []

    def start(folder: Path, site: str) -> Nginx:
        server = Nginx(folder, site)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _shipped(name: str, replacements: dict[str, str]) -> str:
    """The shipped config with only the host's paths and ports replaced (each once)."""
    text = (DEPLOY / name).read_text("utf-8")
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def _type(headers: dict[str, str]) -> str:
    return headers["Content-Type"].replace(" ", "").lower()


def test_static_conf_serves_the_build_as_serve_sends_it(
        tmp_path: Path, serve: Callable[[Path], ServeProcess],
        nginx: Callable[[Path, str], Nginx]) -> None:
    config = _site(tmp_path)
    _build(config)
    public = tmp_path / "public"
    origin = serve(config)
    web = nginx(tmp_path / "nginx", _shipped("static.conf", {
        "root /srv/feedsvc/public;": f"root {public};",
        "proxy_pass http://127.0.0.1:8080;":
            f"proxy_pass http://127.0.0.1:{origin.config.server.port};"}))
    first: dict[str, tuple[str, str]] = {}
    for route in ROUTES:
        status, headers, body = web.get(route)
        served = origin.get(route)
        assert status == 200, (route, status)
        assert body == served[2], route
        assert _type(headers) == _type(served[1]), route
        assert "Accept-Encoding" in headers.get("Vary", ""), route
        first[route] = (headers["ETag"], headers["Last-Modified"])
        # 304 on either validator.
        assert web.get(route, {"If-None-Match": headers["ETag"]})[0] == 304, route
        assert web.get(route, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304, route
        # gzip when asked: the .gz beside the file.
        status, zipped, data = web.get(route, {"Accept-Encoding": "gzip"})
        assert (status, zipped.get("Content-Encoding")) == (200, "gzip"), route
        assert "Accept-Encoding" in zipped.get("Vary", ""), route
        assert gzip.decompress(data) == body, route
    # A dated document's Last-Modified is serve's.
    for route in ("/feed.atom", "/entries/e4", "/archive/2/1.atom", "/sitemap.xml"):
        assert first[route][1] == origin.get(route)[1]["Last-Modified"], route
    # Long caches for the hashed assets and archive pages; the rest as serve says.
    style = next(p.name for p in (public / "assets").iterdir() if p.suffix == ".css")
    status, headers, _ = web.get(f"/assets/{style}")
    assert status == 200 and "immutable" in headers["Cache-Control"]
    assert headers["Content-Type"] == "text/css; charset=utf-8"
    assert "max-age=86400" in web.get("/archive/2/2.atom")[1]["Cache-Control"]
    assert web.get("/feed.atom")[1]["Cache-Control"] == "public, max-age=60"
    # The site's 404 page, and nothing of the build's own files.
    status, _, body = web.get("/no/such/page")
    assert status == 404 and body == origin.get("/no/such/page")[2]
    assert web.get("/.feedsvc-files")[0] == 404
    (public / "entries" / ".index.html.x1.tmp").write_bytes(b"half")
    assert web.get("/entries/.index.html.x1.tmp")[0] == 404
    (public / ".well-known").mkdir()
    (public / ".well-known" / "token").write_bytes(b"acme")
    assert web.get("/.well-known/token")[2] == b"acme"  # the operator's own dot names
    assert web.get("/media/a.txt")[2] == origin.get("/media/a.txt")[2]
    # Another build: the same ETags and dates (no file rewritten).
    _build(config)
    for route in ROUTES:
        headers = web.get(route)[1]
        assert (headers["ETag"], headers["Last-Modified"]) == first[route], route
    # The entry pages' newer/older links go to serve (303) while it runs, else 404.
    newer = _no_redirect(web.url, "/entries/e1/newer")
    assert newer[0] == 303 and str(newer[1]).endswith("/entries/e2")
    assert origin.stop() == 0
    status, _, body = web.get("/entries/e1/older")
    assert status == 404 and b"<html" in body


def _no_redirect(base: str, path: str) -> tuple[int, str | None]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


def _cache_age(config: Path, seconds: int) -> None:
    text = config.read_text("utf-8")
    config.write_text(text.replace("[server]\n", f"[server]\ncache_max_age = {seconds}\n"),
                      "utf-8")


def test_proxy_conf_answers_from_its_cache_while_serve_is_down(
        tmp_path: Path, serve: Callable[[Path], ServeProcess],
        nginx: Callable[[Path, str], Nginx]) -> None:
    config = _site(tmp_path)
    age = 2
    _cache_age(config, age)
    origin = serve(config)
    web = nginx(tmp_path / "nginx", _shipped("proxy.conf", {
        "proxy_cache_path /var/cache/nginx/feedsvc": f"proxy_cache_path {tmp_path}/cache",
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{origin.config.server.port};"}))
    routes = ["/", "/feed.atom", "/entries/e4", "/tags/sky"]
    for route in routes:
        served = origin.get(route)
        status, headers, body = web.get(route)
        assert (status, body) == (200, served[2]), route
        assert headers["ETag"] == served[1]["ETag"], route
        assert web.get(route)[1]["X-Cache-Status"] == "HIT", route
        assert web.get(route, {"If-None-Match": headers["ETag"]})[0] == 304, route
    zipped = wait_until(lambda: (got := web.get("/feed.atom", {"Accept-Encoding": "gzip"}))
                        and got[1].get("Content-Encoding") == "gzip" and got)
    assert gzip.decompress(zipped[2]) == origin.get("/feed.atom")[2]
    before = {route: web.get(route)[2] for route in routes}

    # serve stops (a restart, a crash): readers still get the pages, never a 502.
    assert origin.stop() == 0
    time.sleep(age + 0.5)  # every copy stale now
    for _ in range(3):
        for route in routes:
            status, headers, body = web.get(route)
            assert (status, body) == (200, before[route]), route
            assert headers["X-Cache-Status"] in ("STALE", "UPDATING", "HIT"), route

    # A new entry written meanwhile shows once serve is back, within the copy's age.
    write_seed(tmp_path / "seeds", "late.md", "---\ntitle: Came while down\n---\nHi.\n")
    back = serve(config)
    wait_until(lambda: b"Came while down" in back.get("/feed.atom")[2])
    shown_at = time.monotonic()
    wait_until(lambda: b"Came while down" in web.get("/feed.atom")[2], timeout=age + 5)
    assert time.monotonic() - shown_at <= age + 2
