"""gibench's import graph (issue 21): no import cycle among its modules, ``gibench.tables`` never
imports ``gibench.pipeline``, and the modules the Snakefile imports at DAG build do not import
torch when they are imported.

The graph is read statically (``ast`` over ``src/gibench``): every ``import`` and ``from ... import``
statement, at module level or inside a function, relative ones resolved against the importing
module's package; those under ``if TYPE_CHECKING:`` are left out (they never run).  An edge goes
to the most specific gibench module named (``from gibench.attacks import ig`` ->
``gibench.attacks.ig``; ``from gibench.attacks import ATTACKS`` -> ``gibench.attacks``).

No module is in an import cycle, ``gibench.tables`` imports no ``gibench.pipeline`` module and
the DAG-build modules import no torch, all without exceptions.
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
    """Issue 21 asks for no import cycle: every strongly connected component of the graph is
    one module (the message names each cycle's chain with its import lines)."""
    g = import_graph()
    found = cycles(g)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_a_cycle_would_be_seen():
    """The check above can fail: the real graph plus one back edge (pipeline.paths imports the
    targets that import it) is reported as a cycle through both."""
    g = import_graph()
    assert g.has_edge("gibench.pipeline.targets", "gibench.pipeline.paths")
    g.add_edge("gibench.pipeline.paths", "gibench.pipeline.targets", lines=[1])
    [msg] = cycles(g)
    assert "gibench.pipeline.paths" in msg and "gibench.pipeline.targets" in msg


def test_dag_build_and_leaf_modules_are_acyclic():
    """What the cycles were broken for: config, the wildcard/schema leaves, the dataset and
    model registries and the modules the DAG build reads first import nothing that imports them
    back."""
    g = import_graph()
    for mod in ("gibench.config", "gibench.wildcards", "gibench.schema", "gibench.io", "gibench.datasets",
                "gibench.models", "gibench.pipeline.paths", "gibench.pipeline.cases", "gibench.registry",
                "gibench.attacks", "gibench.attacks.base", "gibench.params", "gibench.metrics",
                "gibench.fl_plan", "gibench.pipeline.targets", "gibench.pipeline.outputs", "gibench.studies",
                "gibench.tables", "gibench.studies.selective_encryption.text_settings",
                "gibench.studies.concealed_samples.layouts"):
        back = nx.descendants(g, mod) & nx.ancestors(g, mod)
        assert not back, f"{mod} is in an import cycle with {sorted(back)}: {cycles(g.subgraph(back | {mod}))}"


def test_wildcards_is_a_leaf():
    g = import_graph()
    succ = sorted(g.successors("gibench.wildcards"))
    assert not succ, f"gibench.wildcards imports {succ}: it must stay a leaf (every layer imports it)"


def test_tables_never_import_pipeline():
    g = import_graph()
    assert any(a.startswith("gibench.tables.") for a, _ in g.edges)      # the reader saw the tables
    found = sorted((a, b) for a, b in g.edges
                   if (a == "gibench.tables" or a.startswith("gibench.tables."))
                   and (b == "gibench.pipeline" or b.startswith("gibench.pipeline.")))
    assert not found, "gibench.tables imports gibench.pipeline:\n" + "\n".join(
        f"{a} -> {b} (line {','.join(map(str, g.edges[a, b]['lines']))})" for a, b in found)


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


HEAVY = ("torch", "transformers", "scipy", "tenseal")

def _heavy_after_import(mods: list[str]) -> list[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    return [m for m in out.stdout.strip().split(",") if m]


def test_dag_build_modules_do_not_import_torch():
    """The Snakefile's modules import no torch (nor transformers, scipy, tenseal) when they
    are imported: the heavy imports wait for the job (or check) that needs them."""
    mods = dag_build_modules()
    assert "gibench.config" in mods and "gibench.pipeline.targets" in mods    # the reader found them
    assert "gibench.fl_plan" in mods        # rules/fl.smk, rules/common.smk: the FedAvg DAG helpers
    heavy = _heavy_after_import(mods)
    assert not heavy, (f"importing the Snakefile's modules ({', '.join(mods)}) imports {', '.join(heavy)}; "
                       f"defer it to the function that needs it (a comment saying why)")


def test_torch_is_seen():
    """The check above can fail: importing a job module that uses torch is seen to import it."""
    assert "torch" in _heavy_after_import(["gibench.pipeline.jobs_fl"])
