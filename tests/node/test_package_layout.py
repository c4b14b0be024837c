"""The layout issue 12 asks for: the node does not import the developer tools (an install runs
without them), and the node's modules import no ROS tooling of the tests."""
from __future__ import annotations

import ast
from pathlib import Path

import ovsam_ros

PACKAGE = Path(ovsam_ros.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a module of ovsam_ros imports (relative imports resolved)."""
    package_parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package_parts[: len(package_parts) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_node_does_not_import_the_tools():
    node_modules = list(PACKAGE.glob("*.py"))
    assert PACKAGE / "node_wiring.py" in node_modules and PACKAGE / "tools" / "bench.py" not in node_modules
    for path in node_modules:
        tools = {name for name in imported_modules(path) if name.startswith(("ovsam_ros.tools", "tests"))}
        assert not tools, f"{path.name} imports {sorted(tools)}"


def test_relative_imports_are_resolved():
    names = imported_modules(PACKAGE / "tools" / "camera_publisher.py")
    assert "ovsam_ros.image_conversion" in names and "ovsam_ros.tools.image_sources" in names
