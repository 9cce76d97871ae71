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

#: Every import inside a function, and why it is there (anything else goes at the top).
LAZY_IMPORTS = {
    # `check`, `new` and `state` never start a server: aiohttp and the serving modules cost
    # them a third of their start-up time.
    ("feedsvc.cli", "aiohttp"), ("feedsvc.cli", "feedsvc.serve.connections"),
    ("feedsvc.cli", "feedsvc.serve.app"),
    ("feedsvc.cli", "uvloop"),  # optional: used when installed
    ("feedsvc.cli", "feedsvc.ingest.authoring"), ("feedsvc.cli", "feedsvc.ingest.dates"),
    # YAML, markdown-it and dateutil only for the seeds that have a front matter or are .md.
    ("feedsvc.ingest.parser", "feedsvc.ingest.frontmatter"),
    ("feedsvc.ingest.parser", "feedsvc.ingest.markdown"),
    ("feedsvc.ingest.parser", "feedsvc.ingest.dates"),
    ("feedsvc.ingest.parser", "feedsvc.ingest.slugs"),
    ("feedsvc.publish.formats.feedgen_xml", "feedsvc.ingest.slugs"),
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


def test_yaml_and_markdown_are_loaded_only_when_a_seed_needs_them() -> None:
    script = textwrap.dedent('''
        import sys
        import feedsvc.cli, feedsvc.serve.app, feedsvc.publish.publisher
        from feedsvc.ingest.parser import parse_seed
        heavy = lambda: sorted(m for m in ("yaml", "markdown_it") if m in sys.modules)
        print(heavy())
        parse_seed("a.txt", "a\\nA\\n\\nUn paragraphe.\\n".encode())
        print(heavy())
        parse_seed("b.txt", "---\\ntitle: B\\n---\\nb\\n\\nDeux.\\n".encode())
        print(heavy())
        parse_seed("c.md", "c\\nC\\n\\nTrois *mots*.\\n".encode())
        print(heavy())
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split("\n")[:4] == [
        "[]", "[]", "['yaml']", "['markdown_it', 'yaml']"], result.stdout + result.stderr


def test_check_and_new_do_not_load_the_server() -> None:
    script = textwrap.dedent('''
        import sys
        import feedsvc.cli
        print(sorted(m for m in ("aiohttp", "feedsvc.serve.app") if m in sys.modules))
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_app_keys_import_no_serving_module_at_run_time() -> None:
    """feedsvc.serve.keys is the leaf every serving module may import (aiohttp's AppKey
    pattern): the types it names from serve/ are imported for the type checker only."""
    at_run_time = set()
    for node in _parse("feedsvc.serve.keys").body:  # top level: TYPE_CHECKING's block aside
        if isinstance(node, ast.Import | ast.ImportFrom):
            at_run_time |= set(_imported(node))
    assert {name for name in at_run_time if name.startswith("feedsvc.serve")} == set()
    assert "feedsvc.publish.snapshot" in at_run_time  # the test sees the imports it checks
