"""The package's shape: one error root; the folders follow the pipeline (ingest → state →
publish → serve), and no module imports one of a later stage; no import cycles (function-level
imports counted, so none can dodge one); the only function-level imports are the listed ones,
each keeping a heavy library off the path that does not need it, and a test proves they do."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import feedsvc
from feedsvc.errors import FeedsvcError
from feedsvc.ingest.dates import DateError
from feedsvc.ingest.source import FolderMissing

PACKAGE = Path(feedsvc.__file__).parent
MODULES = sorted(info.name for info in pkgutil.walk_packages([str(PACKAGE)], "feedsvc.")
                 if not info.ispkg and info.name != "feedsvc.__main__")  # it runs the CLI

#: The stages, in the order data flows through them. A module may import the shared modules
#: (feedsvc.errors, .model, .config, …: the ones directly in feedsvc/), its own stage and the
#: stages before it, never a later one. The CLI (feedsvc.cli) wires them all together.
STAGES = ("ingest", "state", "publish", "serve")
WIRING = {"feedsvc.cli"}

#: Every import inside a function, and why it is there (anything else goes at the top). The
#: milliseconds: what the import costs the path that skips it (python -X importtime, 2-core
#: test machine, 2026-11), measured on `feedsvc check` of a folder of plain .txt seeds.
#: dateutil is not kept lazy: feedgen imports it, and every start reads `ingest.dates`.
LAZY_IMPORTS = {
    # `check`, `new` and `state` never start a server: aiohttp and the serving modules cost
    # them a third of their start-up time.
    ("feedsvc.cli", "aiohttp"), ("feedsvc.cli", "feedsvc.serve.connections"),
    ("feedsvc.cli", "feedsvc.serve.app"), ("feedsvc.cli", "feedsvc.serve.memory"),
    ("feedsvc.cli", "uvloop"),  # used where installed (a dependency on CPython, not Windows)
    ("feedsvc.cli", "feedsvc.serve.activation"),  # only `serve` takes inherited sockets
    ("feedsvc.cli", "feedsvc.serve.notify"),  # SIGHUP caught from the start of `serve`
    ("feedsvc.cli", "feedsvc.serve.keys"),  # the config in force, for the server (reloads)
    ("feedsvc.cli", "feedsvc.ingest.authoring"),  # only `new`: PyYAML, python-slugify (15 ms)
    # PyYAML only for the seeds that have a front matter (19 ms; 36 ms for a lone .txt seed).
    ("feedsvc.ingest.parser", "feedsvc.ingest.frontmatter"),
    # markdown-it-py and nh3 only for .md seeds (28 ms).
    ("feedsvc.ingest.parser", "feedsvc.ingest.markdown"),
    # python-slugify only once a seed has tags: its state (4 ms), its categories (3 ms).
    ("feedsvc.ingest.parser", "feedsvc.ingest.slugs"),
    ("feedsvc.publish.formats._feedgen", "feedsvc.ingest.slugs"),
    ("feedsvc.publish.pages", "feedsvc.ingest.slugs"),  # the tags' links on an entry page
    # Babel (60 ms) only once a page is rendered: `check`, `new` and `state` render none.
    ("feedsvc.publish.pages", "feedsvc.publish.locale"),
    ("feedsvc", "importlib.metadata"),  # only `--version` wants it
}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in STAGES else None


def _parse(module: str) -> ast.Module:
    return ast.parse((PACKAGE.parent / (module.replace(".", "/") + ".py")).read_text("utf-8"))


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert node.module, "no relative imports"
    return [node.module, *(f"{node.module}.{a.name}" for a in node.names)]


def _imports() -> dict[str, set[str]]:
    """Module → the feedsvc modules it imports anywhere in it: at the top, in a function, or
    under TYPE_CHECKING."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        deps = set()
        for node in ast.walk(_parse(name)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps |= {n for n in _imported(node) if n in MODULES}
        graph[name] = deps - {name}
    return graph


def _function_level_imports() -> set[tuple[str, str]]:
    found = set()
    for name in [*MODULES, "feedsvc"]:
        tree = (_parse(name) if name != "feedsvc"
                else ast.parse((PACKAGE / "__init__.py").read_text("utf-8")))
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        found.add((name, _imported(node)[0]))
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_error_feedsvc_defines_is_a_feedsvc_error() -> None:
    assert issubclass(FolderMissing, FeedsvcError) and issubclass(DateError, FeedsvcError)
    assert issubclass(DateError, ValueError)  # as before, for callers that catch that
    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if (cls.__module__ == name and issubclass(cls, BaseException)
                    and not cls_name.startswith("_")):  # private: control flow, never raised out
                found.append(cls)
                assert issubclass(cls, FeedsvcError), f"{name}.{cls_name}"
    assert len(found) >= 10


def test_the_import_graph_has_no_cycle() -> None:
    graph = _imports()
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])
    assert _cycle({**graph, "feedsvc.model": {"feedsvc.publish.publisher"}}) is not None


def test_every_module_is_in_a_stage_or_shared() -> None:
    shared = {name for name in MODULES if _stage(name) is None}
    # The shared modules are few and hold no stage's work.
    assert shared == {"feedsvc.cli", "feedsvc.config", "feedsvc.durable", "feedsvc.errors",
                      "feedsvc.httpdates", "feedsvc.logtext", "feedsvc.model",
                      "feedsvc.timerange"}, shared
    assert {_stage(name) for name in MODULES} == {None, *STAGES}


def test_no_module_imports_a_later_stage() -> None:
    later = []
    for name, deps in _imports().items():
        if name in WIRING:
            continue
        here = STAGES.index(stage) if (stage := _stage(name)) else -1
        for dep in deps:
            if dep in WIRING or (_stage(dep) and STAGES.index(_stage(dep) or "") > here):
                later.append(f"{name} imports {dep}")
    assert later == []


def test_function_level_imports_are_only_the_listed_lazy_ones() -> None:
    found = _function_level_imports()
    assert found - LAZY_IMPORTS == set(), "import these at the top, or list why they are lazy"
    assert LAZY_IMPORTS - found == set(), "no longer lazy: take them off the list"


#: The heavy libraries a listed lazy import keeps off the paths that do not need them.
HEAVY = ("markdown_it", "nh3", "slugify", "yaml")


def _loaded_after(*steps: str) -> list[list[str]]:
    """Run `steps` (Python code; `print(heavy())` where to look) in a fresh interpreter; the
    heavy libraries loaded at each look."""
    script = "\n".join(textwrap.dedent(code) for code in (f'''
        import sys
        heavy = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)
    ''', *steps))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [ast.literal_eval(line) for line in result.stdout.splitlines()]


_ENTRY_STEPS = '''
    from datetime import UTC, datetime
    import feedsvc.cli, feedsvc.serve.app, feedsvc.publish.publisher
    from feedsvc.ingest.parser import parse_seed, stored_content
    from feedsvc.model import FeedInfo, Item
    from feedsvc.publish.registry import formats
    print(heavy())
    now = datetime(2026, 11, 24, tzinfo=UTC)
    info = FeedInfo(id="urn:x", title="T", subtitle="S", language="fr", author_name="A",
                    author_email=None, base_url="http://127.0.0.1/", created=now)
    def publish(entry):  # what the publisher does with a seed: keep it, render it
        stored_content(entry, "x.txt")
        item = Item(entry=entry, id="urn:y", link="http://127.0.0.1/y", published=now,
                    updated=now)
        for fmt in formats():
            fmt.render(info, [item], now)
    publish(parse_seed("a.txt", "a\\nA\\n\\nUn paragraphe.\\n".encode()))
    print(heavy())
    publish(parse_seed("b.txt", "---\\ntitle: B\\n---\\nb\\n\\nDeux.\\n".encode()))
    print(heavy())
    publish(parse_seed("c.md", "c\\nC\\n\\nTrois *mots*.\\n".encode()))
    print(heavy())
    tagged = parse_seed("d.txt",
                        "---\\ntags: [Vie]\\n---\\nd\\nD\\n\\nQuatre.\\n".encode())
    print(heavy())
'''


@pytest.mark.parametrize("first_need", [
    "stored_content(tagged, 'd.txt')",  # the state keeps its tags' slugs
    "[fmt.render(info, [Item(entry=tagged, id='urn:d', link='http://127.0.0.1/d', "
    "published=now, updated=now)], now) for fmt in formats()]",  # categories' terms
], ids=["state", "render"])
def test_yaml_and_markdown_are_loaded_only_when_a_seed_needs_them(
        first_need: str) -> None:
    looks = _loaded_after(_ENTRY_STEPS, f"{first_need}\nprint(heavy())")
    assert looks == [
        [],  # the whole program imported
        [],  # a plain .txt seed, stored and rendered in every format
        ["yaml"],  # a front matter
        ["markdown_it", "nh3", "yaml"],  # a .md seed
        ["markdown_it", "nh3", "yaml"],  # a seed with tags, parsed: no slug made yet
        ["markdown_it", "nh3", "slugify", "yaml"],  # its tags' slugs
    ], looks


def test_check_of_plain_seeds_loads_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "a.txt").write_text("a\nA\n\nUn paragraphe.\n", "utf-8")
    (tmp_path / "config.toml").write_text(
        '[feed]\nbase_url = "http://127.0.0.1:8080/"\n[paths]\nseeds = "seeds"\n'
        'state = "state.sqlite3"\noutput = "public"\n', "utf-8")
    looks = _loaded_after(f'''
        import contextlib, io
        from feedsvc.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["check", "--config", {str(tmp_path / "config.toml")!r}]) == 0
        print(heavy())
    ''')
    assert looks == [[]], looks


@pytest.mark.parametrize("command", [["check"], ["new", "Un titre"], ["state", "backup"]])
def test_commands_that_do_not_serve_do_not_load_the_server(tmp_path: Path,
                                                            command: list[str]) -> None:
    """aiohttp and the serving modules are a third of a command's start-up: `check`, `new`
    and `state` never load them (logging set up for every command included)."""
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "a.txt").write_text("a\nA\n\nUn paragraphe.\n", "utf-8")
    config = tmp_path / "config.toml"
    config.write_text('[feed]\nbase_url = "http://127.0.0.1:8080/"\n[paths]\nseeds = "seeds"\n'
                      'state = "state/feedsvc.sqlite3"\n', "utf-8")
    if command[0] == "state":
        command = [*command, str(tmp_path / "copy.sqlite3")]
        assert subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config",
                               str(config)], capture_output=True, timeout=60).returncode == 0
    script = textwrap.dedent(f'''
        import contextlib, io, sys
        from feedsvc.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            code = main({[*command, "--config", str(config)]!r})
        print(code, sorted(m for m in ("aiohttp", "feedsvc.serve.app", "feedsvc.serve.pipeline")
                           if m in sys.modules))
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True, cwd=tmp_path)
    assert result.stdout.split("\n")[-2] == "0 []", result.stdout + result.stderr


def test_the_app_keys_import_no_serving_module_at_run_time() -> None:
    """feedsvc.serve.keys is the leaf every serving module may import (aiohttp's AppKey
    pattern): the types it names from serve/ are imported for the type checker only."""
    at_run_time = set()
    for node in _parse("feedsvc.serve.keys").body:  # top level: TYPE_CHECKING's block aside
        if isinstance(node, ast.Import | ast.ImportFrom):
            at_run_time |= set(_imported(node))
    assert {name for name in at_run_time if name.startswith("feedsvc.serve")} == set()
    assert "feedsvc.publish.snapshot" in at_run_time  # the test sees the imports it checks


#: A class this long holds more than one concern: split it into parts with their own tests.
CLASS_MAX_LINES = 300


def test_no_class_is_over_300_lines() -> None:
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name in MODULES for node in ast.walk(_parse(name))
            if isinstance(node, ast.ClassDef) and node.end_lineno
            and node.end_lineno - node.lineno + 1 > CLASS_MAX_LINES]
    assert long == []


def test_every_404_and_410_is_the_sites_page() -> None:
    """A 404 or 410 anywhere in the service (media, the site's files, the feeds) is the site's
    HTML page in its language: made by handlers.not_found and handlers.gone only."""
    bare = []
    for path in sorted((PACKAGE / "serve").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            allowed = path.name == "handlers.py" and function.name in ("not_found", "gone")
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("HTTPNotFound", "HTTPGone") and not allowed):
                    bare.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert bare == [], "raise handlers.not_found(request) or handlers.gone(request)"
