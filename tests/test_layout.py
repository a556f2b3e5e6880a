"""The floor plan, checked: the package reads as the loop and imports only downward.

Floors, lowest first (README "Layout"): the ground floor imports nothing else of the package;
``stage1`` is pure math (no FiftyOne); ``store`` is the only door to MongoDB; the steps of the loop
import the floors below, never each other; ``retrain`` composes steps (gate, export, leak check);
the entry points sit on top (pipelines and the demo, then the App, then the CLI that starts it). Imports inside functions count too: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "curation"
GROUND = {"errors", "schema", "slices", "typed_config", "serving_config", "settings", "assets", "console", "media", "processes"}
STEPS = {"ingest", "predict", "evaluate", "mine", "label", "synth", "export", "stage2"}
FLOORS = {
    **dict.fromkeys(GROUND, 0), "stage1": 1, "store": 2, **dict.fromkeys(STEPS, 3), "retrain": 4,
    "pipelines": 5, "demo": 5, "app": 6, "cli": 7,  # entry points: the App runs pipelines; the CLI starts the App
}  # fmt: skip
SKIP = ("hf_template",)  # the bundle's remote code runs without the platform and imports none of it


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else "curation"


def import_graph() -> dict[str, set[str]]:
    """``{module: curation modules it imports}``, every import statement at any depth."""
    files = {_module(p): p for p in PACKAGE.rglob("*.py") if not any(s in p.parts for s in SKIP)}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("curation"):
                submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files]
                # `from pkg import submodule` depends on the submodule; `from pkg import name`, on pkg
                targets = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("curation")]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target not in (module, "curation"):
                    graph[module].add(target)
    return graph


GRAPH = import_graph()


def test_every_part_of_the_package_has_a_floor():
    units = {_unit(m) for m in GRAPH} | {_unit(t) for ts in GRAPH.values() for t in ts}
    assert units - {"curation"} <= set(FLOORS), f"give these a floor: {sorted(units - set(FLOORS) - {'curation'})}"


@pytest.mark.parametrize("unit", sorted(FLOORS))
def test_imports_go_down_only(unit):
    upward = sorted(
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if _unit(m) == unit
        for t in targets
        if _unit(t) != unit and FLOORS[_unit(t)] >= FLOORS[unit] and not (FLOORS[unit] == 0 == FLOORS[_unit(t)])
    )
    assert not upward, "imports that do not go down a floor:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if seen.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(target):], target]))
            if target not in seen:
                visit(target, [*stack, target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])


def test_pure_floors_do_not_touch_fiftyone():
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(_module(path))
        if FLOORS.get(unit, 99) > 1 or any(s in path.parts for s in SKIP):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "fiftyone" for n in names), f"{path.relative_to(PACKAGE)} imports FiftyOne"
