"""The import rules of ../shared/DESIGN.md, checked on the source (parsed with ``ast``, nothing imported).

- The core (``cspine``) imports no stage, except the composition root above the stages (the stage table
  and the ``cspine`` command), listed in :data:`COMPOSITION_ROOT`.
- A stage imports the core and never another stage (what two stages share lives in the core). The one
  exception is :data:`LIBRARIES`: ``dataset_card`` holds the card templates and their rendering, a library
  that only ``release`` (the package stage) uses, not a stage of the table.
- No import cycle between top-level packages. The composition root is its own node of the package graph
  (it sits above the stages), so a stage or a core module importing it is a cycle too.

Every import statement counts, wherever it is (module top, inside functions, under ``TYPE_CHECKING``),
and so do ``__import__("x.y")`` / ``importlib.import_module("x.y")`` with a literal name.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "cspine"
STAGES = ("training", "privacy", "evaluation", "reader_study", "dataset_card", "release")
PACKAGES = (CORE, *STAGES)

#: The composition root: the stage table and the `cspine` command, the only core modules allowed to import
#: stages (DESIGN.md, "Composition"). In the package graph they form the node ROOT_NODE, above the stages.
COMPOSITION_ROOT = frozenset({"cspine.stages", "cspine.cli", "cspine.__main__"})
ROOT_NODE = "cspine[composition root]"

#: Top-level packages that are libraries of one stage rather than stages: package -> the stages that may use it.
LIBRARIES = {"dataset_card": frozenset({"release"})}

#: Modules left out of every check. Empty: the CLI wiring and the composed config live in the composition root.
LEGACY_CLI_MODULES: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=1)
def project_modules() -> dict[str, Path]:
    """Every module of the top-level packages: dotted name -> file."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[module_name(path)] = path
    return out


def _literal_import_call(node: ast.Call) -> str | None:
    """The module name of ``__import__("a.b")`` or ``importlib.import_module("a.b")`` / ``import_module(...)``."""
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    if name in ("__import__", "import_module") and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
            return arg.value
    return None


def imports_of(source: str, module: str, is_package: bool,
               known: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``source`` of ``module``; relative imports resolved.

    ``from a import b`` counts as an import of ``a.b`` when that is a module in ``known``, else of ``a``.
    """
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub if sub in known else base, node.lineno))
        elif isinstance(node, ast.Call) and (name := _literal_import_call(node)):
            out.append((name, node.lineno))
    return out


def node_of(module: str) -> str:
    """Node of the package graph: the top-level package, or ROOT_NODE for the composition root."""
    return ROOT_NODE if module in COMPOSITION_ROOT else module.split(".")[0]


def project_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported project module, line), legacy CLI modules left out."""
    mods = project_modules()
    known = set(mods)
    out = []
    for mod, path in mods.items():
        if mod in LEGACY_CLI_MODULES:
            continue
        for target, line in imports_of(path.read_text(encoding="utf-8"), mod, path.name == "__init__.py", known):
            if target.split(".")[0] in PACKAGES:
                out.append((mod, target, line))
    return sorted(set(out))


def mods_path(mod: str) -> Path:
    return project_modules()[mod].relative_to(ROOT)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as [a, b, ..., a], or None (iterative DFS, sorted order)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


# -- the parser and the cycle finder themselves ------------------------------------------------------------
def test_imports_of_sees_every_kind_of_import():
    src = (
        "import os, privacy.audit\n"
        "from evaluation import metrics\n"
        "def f():\n"
        "    from .sibling import x\n"
        "    from .. import core_mod\n"
        "    __import__('training.cli', fromlist=['x'])\n"
        "    importlib.import_module('reader_study')\n"
    )
    got = imports_of(src, "release.sub.mod", False, known={"evaluation.metrics", "release.core_mod"})
    assert sorted(got) == sorted([
        ("os", 1), ("privacy.audit", 1), ("evaluation.metrics", 2), ("release.sub.sibling", 4),
        ("release.core_mod", 5), ("training.cli", 6), ("reader_study", 7),
    ])


def test_find_cycle_finds_a_planted_cycle_and_only_then():
    dag = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert find_cycle(dag) is None
    cyc = find_cycle(dag | {"c": {"a"}})
    assert cyc is not None and cyc[0] == cyc[-1]
    assert all(b in (dag | {"c": {"a"}})[a] for a, b in zip(cyc, cyc[1:]))


def test_allowlists_name_real_modules_or_planned_ones():
    mods = project_modules()
    assert set(PACKAGES) <= set(mods), "a top-level package is missing"
    assert all(m.startswith(CORE + ".") for m in COMPOSITION_ROOT)
    stale = sorted(m for m in LEGACY_CLI_MODULES if m not in mods)
    assert not stale, f"LEGACY_CLI_MODULES names modules that no longer exist, remove them: {stale}"


# -- the rules ---------------------------------------------------------------------------------------------
def test_core_imports_no_stage():
    bad = [
        f"{mods_path(mod)}:{line}: {mod} imports {target}"
        for mod, target, line in project_imports()
        if node_of(mod) == CORE and target.split(".")[0] in STAGES
    ]
    assert not bad, "the core (cspine) must not import a stage; move shared code into cspine:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], list[str]] = defaultdict(list)
    for mod, target, line in project_imports():
        a, b = node_of(mod), node_of(target)
        if a != b:
            edges[a].add(b)
            why[a, b].append(f"{mods_path(mod)}:{line} imports {target}")
    cycle = find_cycle(edges)
    if cycle:
        detail = "\n".join(f"  {a} -> {b}: " + "; ".join(why[a, b][:3]) for a, b in zip(cycle, cycle[1:]))
        pytest.fail("import cycle between packages: " + " -> ".join(cycle) + "\n" + detail)


def test_no_stage_imports_another_stage():
    bad = [
        f"{mods_path(mod)}:{line}: {mod} imports {target}"
        for mod, target, line in project_imports()
        if (a := node_of(mod)) in STAGES and (b := node_of(target)) in STAGES and a != b
        and a not in LIBRARIES.get(b, ())
    ]
    assert not bad, ("a stage imports the core, never another stage's internals; move what they share into "
                     "cspine:\n" + "\n".join(bad))
