"""How the page tests get their Chromium (tests/chromium.py): found, installed as root, or a
skip that says why. Only the decision is tested here: apt-get itself is not run."""

from __future__ import annotations

import os
import shutil

from tests import chromium


def test_found_programs_are_used_as_they_are(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/test/{name}")
    assert chromium.find_or_install() == ("/opt/test/chromium", "/opt/test/chromedriver")


def test_missing_and_not_root_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get"
                        else None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = chromium.find_or_install()
    assert isinstance(reason, str)
    assert "not root" in reason and "apt-get install -y chromium chromium-driver" in reason


def test_missing_without_apt_get_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = chromium.find_or_install()
    assert isinstance(reason, str) and "no apt-get" in reason


def test_the_flags_keep_chromium_off_the_network():
    """As root on a closed network: no sandbox, and none of the background connections."""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):
        assert flag in chromium.FLAGS
