"""The project's floors, checked on the source: every import points down (or sideways within a
package), no import cycle, no private name used across modules, imports at the top.

Floors, bottom to top: ``common`` ← ``data_prep`` ← ``models`` ← ``training`` ← ``tuning`` / ``eval``
← ``notebooks``, ``benchmarks``, ``docs``. ``tuning`` and ``eval`` share a floor and do not import
each other. Run ``python -m pytest tests/test_layers.py -q`` to check a change.
"""
import ast
import pathlib

import pytest

from tests.helpers import REPO

FLOORS = {"common": 0, "data_prep": 1, "models": 2, "training": 3, "tuning": 4, "eval": 4, "notebooks": 5,
          "benchmarks": 5, "docs": 5}
# The command lines that read a configuration before Keras may be imported (training.backend):
# they import their library inside main(), after reading it.
LATE_IMPORTS = {("training.fit", "main"), ("tuning.hyperband", "main")}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    modules = {}
    for package in FLOORS:
        for path in sorted((REPO / package).rglob("*.py")):
            modules[module_name(path)] = ast.parse(path.read_text(), str(path))
    return modules


MODULES = project_modules()


def imports(tree: ast.Module):
    """``(imported module, names, enclosing function or None, is top-level)`` for project imports."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], function, node is tree) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names = [alias.name for alias in child.names]
                submodules = [f"{child.module}.{name}" for name in names if f"{child.module}.{name}" in MODULES]
                found.extend((target, [], function, node is tree) for target in submodules)
                others = [name for name in names if f"{child.module}.{name}" not in MODULES]
                if others or not submodules:
                    found.append((child.module, others, function, node is tree))
            visit(child, inner)

    visit(tree, None)
    return [entry for entry in found if entry[0].split(".")[0] in FLOORS]


EDGES = {name: imports(tree) for name, tree in MODULES.items()}


def floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def test_every_import_points_down_or_within_its_package():
    upward = [f"{source} → {target}" for source, entries in EDGES.items() for target, *_ in entries
              if floor(target) > floor(source)
              or (floor(target) == floor(source) and target.split(".")[0] != source.split(".")[0])]
    assert upward == []


def test_no_import_cycles():
    graph = {source: {target for target, *_ in entries if target in MODULES and target != source}
             for source, entries in EDGES.items()}
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" → ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_private_names_across_modules():
    private = [f"{source} imports {target}.{name}" for source, entries in EDGES.items()
               for target, names, *_ in entries for name in names
               if name.startswith("_") and not name.endswith("__") and target != source]
    assert private == []


def test_project_imports_sit_at_the_top():
    late = [f"{source}.{function}: {target}" for source, entries in EDGES.items()
            for target, _, function, top in entries if not top and function is not None
            and (source, function) not in LATE_IMPORTS]
    assert late == []


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_the_floors_cover_every_package(package):
    assert (REPO / package / "__init__.py").is_file() or package == "docs"


FAMILIES = sorted({name.split(".")[2] for name in MODULES if name.startswith("data_prep.datasets.")} - {"registry"})


def test_each_dataset_family_is_a_room():
    """A family imports no other family; the rest of the project reaches a family only through the
    registry (``data_prep.datasets``), never a family's module."""
    assert FAMILIES == ["compcars", "stanford_cars"]
    crossing = []
    for source, entries in EDGES.items():
        family = source.split(".")[2] if source.startswith("data_prep.datasets.") else None
        for target, *_ in entries:
            if not target.startswith("data_prep.datasets.") or target == "data_prep.datasets.registry":
                continue
            target_family = target.split(".")[2]
            if family != target_family and source != "data_prep.datasets":
                crossing.append(f"{source} → {target}")
    assert crossing == []


NEAR_DUPLICATE_STAGES = ["candidates", "same_photo", "contact_sheet", "label_conflicts", "pairs"]


def test_near_duplicate_stages_import_only_earlier_stages():
    """candidates and same_photo stand alone; label_conflicts uses the report's file names; pairs
    runs them all. Nothing outside the room imports a stage but through ``data_prep.near_duplicates``
    (tests and benchmarks aside)."""
    prefix = "data_prep.near_duplicates."
    assert sorted(name[len(prefix):] for name in MODULES if name.startswith(prefix)) == sorted(NEAR_DUPLICATE_STAGES)
    backwards = [f"{source} → {target}" for source, entries in EDGES.items() if source.startswith(prefix)
                 for target, *_ in entries if target.startswith(prefix)
                 and NEAR_DUPLICATE_STAGES.index(target[len(prefix):]) >= NEAR_DUPLICATE_STAGES.index(
                     source[len(prefix):])]
    assert backwards == []
    outside = [f"{source} → {target}" for source, entries in EDGES.items()
               if source.startswith("data_prep") and not source.startswith("data_prep.near_duplicates")
               for target, *_ in entries if target.startswith(prefix)]
    assert outside == []
