"""The import graph is layered: ``cli`` at the top, ``policy`` and the package's small shared modules at the
ground, and no module imports from a layer above its own (late imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "autopilot_ops"

#: Top to bottom; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("autopilot_ops.cli",),
    ("autopilot_ops.quickstart",),
    ("autopilot_ops.airflow",),
    ("autopilot_ops.airflow.hooks",),
    ("autopilot_ops.scheduler", "autopilot_ops.cleanup"),
    ("autopilot_ops.queues.loader",),
    ("autopilot_ops.store",),
    ("autopilot_ops.queues", "autopilot_ops.backends"),
    ("autopilot_ops.pilot",),
    ("autopilot_ops.panda",),
    ("autopilot_ops.policy", "autopilot_ops.config", "autopilot_ops.netutil", "autopilot_ops.errors", "autopilot_ops"),
)


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    assert layer >= 0, f"{module} is in no layer"
    return layer


def imports_of(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "autopilot_ops":
                found += [f"autopilot_ops.{alias.name}" for alias in node.names]
            elif node.module.startswith("autopilot_ops."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("autopilot_ops")]
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target in imports_of(path):
            if layer_of(target) < layer_of(module):
                upward.append(f"{module} imports {target}")
    assert upward == []

