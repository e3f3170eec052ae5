"""The import graph of ganpipe and the flows: layered, and free of cycles (docs/architecture.md,
"Layers"). A cycle makes a module's behaviour depend on which of its partners was imported
first, and a lower layer importing a higher one makes the floor move with every stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycle():
    """Every import counts, those inside functions and under TYPE_CHECKING included."""
    graph = grimp.build_graph("ganpipe", "ganpipe_flows")
    assert len(graph.modules) > 100  # the whole package was read, not an empty path
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle():
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges.get(m, set())

    assert _cycles(Graph()) == [["a", "b", "c"]]


def test_the_layers_contract_holds():
    """``lint-imports`` with the layers declared in pyproject.toml, as `make lint` runs it."""
    script = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(script), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "ganpipe layers KEPT" in done.stdout


def test_every_package_is_installed_and_the_flows_under_their_own_name():
    """pyproject.toml lists the packages (the flows folder installs as ``ganpipe_flows``, a
    name no other distribution can clash with): a new subpackage must be listed to ship."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ganpipe").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == on_disk | {"ganpipe_flows"}
    assert setuptools["package-dir"] == {"ganpipe_flows": "flows"}
    import ganpipe_flows.pipeline

    assert Path(ganpipe_flows.pipeline.__file__).resolve() == ROOT / "flows" / "pipeline.py"
