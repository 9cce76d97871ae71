"""A real Chromium for the page tests: Debian's `chromium` and `chromium-driver`, driven by
Selenium, installed here when missing (as root, with apt-get) and skipped with the reason
only where that cannot be done.

Chromium runs headless as root on a machine whose network is closed, so it gets --no-sandbox
(root), and the flags that stop its background connections (update checks, sync, QUIC probes:
refused here, many at a time) and a fresh profile per browser."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Debian's packages and where they put their programs.
PACKAGES = ("chromium", "chromium-driver")
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"

FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
    "--disable-extensions", "--mute-audio",
)

#: Desktop and phone: (width, height, mobile). A phone honours <meta name=viewport>.
VIEWPORTS = {"desktop": (1280, 900, False), "phone": (390, 844, True)}


def screenshot_dir() -> Path:
    """$FEEDSVC_SCREENSHOTS, else tests/screenshots/ (ignored by git)."""
    folder = Path(os.environ.get("FEEDSVC_SCREENSHOTS") or ROOT / "tests" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _programs() -> tuple[str, str] | None:
    chromium, driver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    return (chromium, driver) if chromium and driver else None


def find_or_install() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, installing Debian's packages when they are missing and
    we are root; else the reason they cannot be had (the tests skip with it)."""
    found = _programs()
    if found:
        return found
    if not shutil.which("apt-get"):
        return f"{CHROMIUM}/{CHROMEDRIVER} not found and no apt-get to install {PACKAGES}"
    if os.geteuid() != 0:
        return (f"{CHROMIUM}/{CHROMEDRIVER} not found; not root, so cannot run "
                f"`apt-get install -y {' '.join(PACKAGES)}` (run it, or .ci/run, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    log = []
    for command in (["apt-get", "update", "-q"], install):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        log.append(f"$ {' '.join(command)} -> {done.returncode}\n{done.stderr[-2000:]}")
        if done.returncode != 0:
            return "could not install Chromium:\n" + "\n".join(log)
    return _programs() or "apt-get installed " + " ".join(PACKAGES) + " but found no programs"


class Browser:
    """One headless Chromium (one profile) through chromedriver."""

    def __init__(self, chromium: str, driver: str, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument("--window-size=1280,900")
        # Give the driver's path: Selenium then never looks for (or downloads) one itself.
        self.driver = webdriver.Chrome(
            options=options, service=Service(executable_path=driver, log_output=os.devnull))
        self.driver.set_page_load_timeout(30)

    def cdp(self, command: str, **params: Any) -> Any:
        return self.driver.execute_cdp_cmd(command, params)

    def open(self, url: str, viewport: str) -> None:
        """Load `url` as seen on that device (its width, and a phone's viewport rules)."""
        width, height, mobile = VIEWPORTS[viewport]
        self.cdp("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=mobile)
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def screenshot(self, name: str) -> Path:
        """The whole page (up to 6000 px tall) as a PNG in the screenshots folder."""
        size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
        width = self.js("return window.innerWidth")
        data = self.cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": width,
                              "height": min(max(size["height"], 1), 6000), "scale": 1})
        path = screenshot_dir() / f"{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def quit(self) -> None:
        self.driver.quit()


def start(chromium: str, driver: str) -> tuple[Browser, tempfile.TemporaryDirectory[str]]:
    profile = tempfile.TemporaryDirectory(prefix="feedsvc-chromium-")
    return Browser(chromium, driver, Path(profile.name)), profile


#: What a reader sees: the text of every rendered element, with CSS generated content
#: (::before/::after `content: "…"`), skipping what `display: none` or `visibility: hidden`
#: hides. Works for HTML and for an XML document styled by <?xml-stylesheet?> CSS, whose
#: explanations can only come from generated content.
VISIBLE_TEXT_JS = r"""
const out = [];
function generated(el, pseudo) {
  const c = getComputedStyle(el, pseudo).content;
  if (!c || c === 'none' || c === 'normal') return;
  const m = c.match(/"((?:[^"\\]|\\.)*)"/g);
  if (m) out.push(m.map(s => JSON.parse(s)).join(''));
}
function walk(node) {
  if (node.nodeType === Node.TEXT_NODE) { out.push(node.data); return; }
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const style = getComputedStyle(node);
  if (style.display === 'none') return;
  const shown = style.visibility !== 'hidden';
  if (shown) generated(node, '::before');
  for (const child of node.childNodes) {
    if (shown || child.nodeType === Node.ELEMENT_NODE) walk(child);
  }
  if (shown) generated(node, '::after');
  if (style.display !== 'inline') out.push('\n');
}
const root = document.body || document.documentElement;
if (['script', 'style', 'head'].indexOf(root.localName) < 0) walk(root);
return out.join(' ').replace(/[ \t\u00a0]+/g, ' ').replace(/ *\n[\s]*/g, '\n').trim();
"""
