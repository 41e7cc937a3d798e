"""gibench's import graph (issue 21): no import cycle among its modules, ``gibench.tables`` never
imports ``gibench.pipeline``, and the modules the Snakefile imports at DAG build do not import
torch when they are imported.

The graph is read statically (``ast`` over ``src/gibench``): every ``import`` and ``from ... import``
statement, at module level or inside a function, relative ones resolved against the importing
module's package.  An edge goes to the most specific gibench module named (``from gibench.attacks
import ig`` -> ``gibench.attacks.ig``; ``from gibench.attacks import ATTACKS`` -> ``gibench.attacks``).
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for p in sorted((SRC / "gibench").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _resolve(name: str, mods: dict) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(module: str, tree: ast.AST, is_pkg: bool, mods: dict) -> list[tuple[str, int]]:
    """(gibench module, line) for everything ``tree`` imports, relative imports resolved: the
    module named, or for ``from p import name`` the submodule ``p.name`` if there is one, else ``p``."""
    pkg = module if is_pkg else module.rpartition(".")[0]
    type_only = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                 for stmt in node.body for sub in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:       # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, mods) if name == "gibench" or name.startswith("gibench.") else None
            if target is not None and target != module:
                out.append((target, node.lineno))
    return out


def import_graph() -> nx.DiGraph:
    """Modules of gibench; an edge a -> b for each gibench module b that a imports (edge
    attribute ``lines``: where in a)."""
    mods = _modules()
    g = nx.DiGraph()
    for mod, (path, is_pkg) in mods.items():
        g.add_node(mod)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, line in imported_modules(mod, tree, is_pkg, mods):
            if g.has_edge(mod, target):
                g.edges[mod, target]["lines"] = sorted(set(g.edges[mod, target]["lines"]) | {line})
            else:
                g.add_edge(mod, target, lines=[line])
    return g


def _chain(g: nx.DiGraph, cycle: list[tuple[str, str]]) -> str:
    rel = lambda m: m.removeprefix("gibench.")  # noqa: E731
    hops = [f"{rel(a)} (line {','.join(map(str, g.edges[a, b]['lines']))})" for a, b in cycle]
    return " -> ".join(hops + [rel(cycle[0][0])])


def cycles(g: nx.DiGraph) -> list[str]:
    """One readable cycle per strongly connected component of more than one module."""
    out = []
    for comp in sorted(nx.strongly_connected_components(g), key=lambda c: (-len(c), sorted(c))):
        if len(comp) > 1:
            sub = g.subgraph(comp)
            cyc = nx.find_cycle(sub, source=sorted(comp)[0])
            out.append(f"{len(comp)} modules in a cycle, e.g. {_chain(g, cyc)}; all: {', '.join(sorted(comp))}")
    return out


def test_graph_sees_known_edges():
    """The reader resolves relative, absolute, submodule and function-local imports."""
    g = import_graph()
    assert g.has_edge("gibench.pipeline.paths", "gibench.wildcards")      # from ..wildcards import fmt
    assert g.has_edge("gibench.attacks", "gibench.attacks.ig")            # from . import ig (submodule)
    assert g.has_edge("gibench.cli", "gibench.config")                     # inside a function
    assert not g.has_edge("gibench.wildcards", "gibench.config")


def test_cycle_report_names_the_chain():
    g = nx.DiGraph()
    g.add_edge("gibench.a", "gibench.b", lines=[3])
    g.add_edge("gibench.b", "gibench.a", lines=[7, 9])
    [msg] = cycles(g)
    assert "a (line 3) -> b (line 7,9) -> a" in msg


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles in src/gibench:\n" + "\n".join(found)


def test_wildcards_is_a_leaf():
    g = import_graph()
    assert list(g.successors("gibench.wildcards")) == []


def test_tables_never_import_pipeline():
    g = import_graph()
    bad = [f"{a} -> {b} (line {','.join(map(str, g.edges[a, b]['lines']))})" for a, b in g.edges
           if (a == "gibench.tables" or a.startswith("gibench.tables."))
           and (b == "gibench.pipeline" or b.startswith("gibench.pipeline."))]
    assert not bad, "gibench.tables imports gibench.pipeline:\n" + "\n".join(bad)


_SMK_IMPORT = re.compile(r"^(?:from\s+(gibench[\w.]*)\s+import\s+([\w ,]+)|import\s+(gibench[\w.]*))", re.M)


def dag_build_modules() -> list[str]:
    """The gibench modules the Snakefile and rules/*.smk import at their top level (an indented
    import runs only inside a function, when it is called)."""
    mods = _modules()
    found = []
    for f in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        for m in _SMK_IMPORT.finditer(f.read_text(encoding="utf-8")):
            if m.group(3):
                found.append(m.group(3))
                continue
            for item in m.group(2).split(","):
                name = item.split(" as ")[0].strip()
                full = f"{m.group(1)}.{name}"
                found.append(full if full in mods else m.group(1))
    return list(dict.fromkeys(found))


def test_dag_build_modules_do_not_import_torch():
    mods = dag_build_modules()
    assert "gibench.config" in mods and "gibench.pipeline.targets" in mods    # the reader found them
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + "heavy = [m for m in ('torch', 'transformers', 'scipy', 'tenseal') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "", (f"importing the Snakefile's modules ({', '.join(mods)}) imports "
                                      f"{out.stdout.strip()}; defer it to the function that needs it")
