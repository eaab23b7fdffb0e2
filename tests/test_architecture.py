"""The arrows of docs/architecture.md: which package may import which, the emulator's layers, no cycles."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "console", "dicom_pipeline", "dicom_samples", "handlers", "healthcare_emulator", "local_bigquery",
            "local_stack")

# Package → the project packages (or single modules) it may import, as docs/architecture.md draws them.
ALLOWED = {
    "main": {"handlers"},
    "handlers": {"dicom_pipeline"},
    "dicom_pipeline": set(),
    "cli": {"dicom_pipeline", "local_bigquery"},
    "console": {"dicom_pipeline", "cli.query", "cli.common"},
    "local_stack": {"dicom_pipeline", "local_bigquery", "dicom_samples", "healthcare_emulator.lifecycle"},
    "healthcare_emulator": {"local_bigquery"},
    "local_bigquery": set(),
    "dicom_samples": set(),
}

# The emulator's layers, top to bottom: a module may import its own layer's and lower layers' modules.
EMULATOR_LAYERS = {"__init__": 7, "__main__": 7, "api": 6, "app": 5, "jobs": 4, "store": 3, "dicom": 2,
                   "names": 1, "lifecycle": 1, "errors": 0}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def project_modules() -> dict[str, Path]:
    modules = {"main": ROOT / "main.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            modules[module_name(path)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports, at any depth (function-level imports included)."""
    modules = project_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from package import module` imports the module; `from module import name` the module.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def top(module: str) -> str:
    return module.split(".")[0]


def test_packages_import_only_what_the_architecture_allows() -> None:
    graph = import_graph()
    assert set(ALLOWED) == {"main", *PACKAGES}
    wrong = []
    for source, targets in graph.items():
        for target in targets:
            if top(target) == top(source):
                continue
            allowed = ALLOWED[top(source)]
            if top(target) not in allowed and not any(target == a or target.startswith(f"{a}.") for a in allowed):
                wrong.append(f"{source} → {target}")
    assert wrong == []


def test_the_emulator_layers_point_down() -> None:
    def layer(module: str) -> int:
        parts = module.split(".")
        return EMULATOR_LAYERS[parts[1] if len(parts) > 1 else "__init__"]

    graph = import_graph()
    upward = [f"{source} → {target}" for source, targets in graph.items() if top(source) == "healthcare_emulator"
              for target in targets if top(target) == "healthcare_emulator" and layer(target) > layer(source)]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(project_modules()):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_graph_sees_relative_and_absolute_imports() -> None:
    graph = import_graph()
    assert "dicom_pipeline.errors" in graph["dicom_pipeline.config"]  # from .errors import ...
    assert "dicom_pipeline.healthcare" in graph["dicom_pipeline.importer"]  # from . import healthcare
    assert "dicom_pipeline.importer" in graph["handlers.storage_import"]  # from dicom_pipeline import importer
    assert "healthcare_emulator.store.dicom_store" in graph["healthcare_emulator.app"]
