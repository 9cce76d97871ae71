"""The package's shape: one error root, no import cycles (function-level imports counted, so
none can dodge one), and YAML and Markdown loaded only when a seed needs them."""

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
from feedsvc.dates import DateError
from feedsvc.errors import FeedsvcError
from feedsvc.source import FolderMissing

PACKAGE = Path(feedsvc.__file__).parent
MODULES = sorted(f"feedsvc.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE)])
                 if info.name != "__main__")  # importing it runs the command line


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


def _imports() -> dict[str, set[str]]:
    """Module → the feedsvc modules it imports anywhere in it: at the top, in a function, or
    under TYPE_CHECKING."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        tree = ast.parse((PACKAGE / f"{name.split('.')[1]}.py").read_text(encoding="utf-8"))
        deps = set()
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            deps |= {target for n in names if (target := ".".join(n.split(".")[:2])) in MODULES}
        graph[name] = deps - {name}
    return graph


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


def test_the_import_graph_has_no_cycle() -> None:
    graph = _imports()
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])
    assert _cycle({**graph, "feedsvc.model": {"feedsvc.publisher"}}) is not None  # it finds one
    # The order of the stages: a reader of seeds never imports the state, publishing or serving.
    for name in ("feedsvc.parser", "feedsvc.frontmatter", "feedsvc.catalog", "feedsvc.source"):
        assert not graph[name] & {"feedsvc.store", "feedsvc.publisher", "feedsvc.server",
                                  "feedsvc.cli", "feedsvc.registry"}, name


def test_yaml_and_markdown_are_loaded_only_when_a_seed_needs_them() -> None:
    script = textwrap.dedent('''
        import sys
        import feedsvc.cli, feedsvc.server, feedsvc.publisher, feedsvc.longtail
        from feedsvc.parser import parse_seed
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
