"""The package's layering, read from the source: imports point one way (down), nothing but
the entry points imports the CLI, Ray is imported only by the search (tuning/) and bench
layers, and no module is much over 400 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "fer_search"
# Lower layers first; a unit may import only units of a lower rank (its own package aside).
RANKS = {
    "errors": 0,
    "config": 1,
    "stats": 1,
    "objectives": 1,  # what a search optimises besides val_acc: rows in, front and choice out
    "data": 2,
    "models": 2,
    "augment": 2,
    "space": 2,
    "evaluation": 2,
    "ensemble": 2,
    "report": 3,  # above space (it reads the saved space.yaml), as in STYLE.md
    "engine": 3,
    "faces": 3,  # face detectors and tracks (no model, no torch)
    "prediction": 4,
    "exporter": 4,
    "recheck": 4,
    "tuning": 4,
    "video": 5,  # prediction's face finder, crops and model, frame by frame
    "experiment": 5,  # a search's results directory, read on demand (fer_search.Experiment)
    "api": 6,
    "bench": 7,
    "cli": 8,
    "__main__": 9,
}
RAY_LAYERS = {"tuning", "bench"}
MAX_LINES = 500


def unit_of(path: Path) -> str:
    """fer_search/tuning/run.py -> 'tuning'; fer_search/api.py -> 'api'."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(path: Path) -> set[str]:
    """The fer_search units a file imports anywhere (module level or inside functions), and
    'ray' when it imports Ray."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ray":
                found.add("ray")
            elif parts[0] == "fer_search" and len(parts) > 1 and parts[1] in RANKS:
                found.add(parts[1])
    return found


def package_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_unit_has_a_rank():
    units = {unit_of(p) for p in package_files()}
    assert units <= set(RANKS), f"give these a layer in RANKS: {sorted(units - set(RANKS))}"


def test_imports_point_down():
    upward = []
    for path in package_files():
        unit = unit_of(path)
        for target in imported_units(path) - {unit, "ray"}:
            if RANKS[target] >= RANKS[unit]:
                upward.append(f"{path.relative_to(REPO)} imports {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_nothing_but_the_entry_points_imports_the_cli():
    importers = [p for p in package_files() if "cli" in imported_units(p) and unit_of(p) != "cli"]
    assert [p.name for p in importers] == ["__main__.py"]


def test_ray_only_in_the_search_and_bench_layers():
    users = {unit_of(p) for p in package_files() if "ray" in imported_units(p)}
    assert users <= RAY_LAYERS, f"Ray imported outside {RAY_LAYERS}: {users - RAY_LAYERS}"


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in package_files()}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                graph[name] |= {t for t in targets if t in modules and t != name}
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in graph[node]:
            assert seen.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in seen:
                visit(nxt, [*trail, node])
        seen[node] = 2

    for name in modules:
        if name not in seen:
            visit(name, [])


def test_no_module_is_much_over_400_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules: {long}"
