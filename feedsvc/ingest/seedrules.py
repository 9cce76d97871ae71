"""What the parser and the front matter both hold a seed to: the form of a slug and how long a
slug and a headline may be. Pure; its own module so that neither imports the other for it."""

from __future__ import annotations

import re

SLUG_MAX = 128
HEADLINE_MAX = 1000
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def is_slug(text: str) -> bool:
    return len(text) <= SLUG_MAX and SLUG_RE.fullmatch(text) is not None
