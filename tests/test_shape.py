"""The shape of the code: small modules and functions, floors that only import downwards, no outside citations.

Floors, lowest first: the core (artifact, spec, errors, ...) imports no other laser package; runtime
imports no measure/serve/cli/optimize/doctor; the doctor imports no optimize/serve/cli; only the CLI imports the CLI. Lazy imports inside functions count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "laser"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
CORE = {"artifact", "spec", "errors", "stages", "_callable", "preprocess",
        "architecture", "vision_compat", "timing", "text"}
UPPER = {"runtime", "measure", "serve", "optimize", "compress", "hub", "cli", "models", "export", "doctor", "advise",
         "web"}
NOT_FROM_RUNTIME = {"measure", "serve", "cli", "optimize", "doctor", "advise"}
NOT_FROM_DOCTOR = {"optimize", "serve", "cli"}  # the doctor sits below optimize: it measures, optimize asks
OUTSIDE_FILES = ("DESIGN.md", "STYLE.md", "PROTOCOL.md")


def modules() -> Iterator[tuple[Path, str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        yield path, name, ast.parse(path.read_text(), str(path))


def floor(module: str) -> str:
    """The package a module belongs to below ``laser`` ("" for laser itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imported(name: str, path: Path, tree: ast.Module) -> Iterator[str]:
    """Every laser module ``tree`` imports, at the top or inside functions; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "laser")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] == "laser":
                yield module


def rel(path: Path) -> str:
    return str(path.relative_to(SRC.parents[1]))


def test_no_module_is_over_500_lines():
    long = {rel(p): n for p, _, _ in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_no_function_is_over_80_lines():
    long = {f"{rel(p)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
            for p, _, tree in modules() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named helpers): {long}"


def test_lower_floors_import_no_upper_one():
    bad = []
    for path, name, tree in modules():
        mine = floor(name)
        for target in imported(name, path, tree):
            theirs = floor(target)
            if mine in CORE and theirs in UPPER:
                bad.append(f"core {name} imports {target}")
            if mine == "runtime" and theirs in NOT_FROM_RUNTIME:
                bad.append(f"runtime {name} imports {target}")
            if mine == "doctor" and theirs in NOT_FROM_DOCTOR:
                bad.append(f"doctor {name} imports {target}")
            if mine != "cli" and theirs == "cli":
                bad.append(f"library {name} imports {target}")
    assert not bad, "imports that point up a floor:\n" + "\n".join(sorted(set(bad)))


def test_product_code_cites_no_file_outside_the_repository():
    cited = [f"{rel(p)} cites {f}" for p, _, _ in modules() for f in OUTSIDE_FILES if f in p.read_text()]
    assert not cited, f"product code and its messages must stand on their own: {cited}"


def test_the_floor_rules_catch_an_upward_import():
    tree = ast.parse("def f():\n    from laser.models.factory import build_module\n")
    assert list(imported("laser.artifact", SRC / "artifact.py", tree)) == ["laser.models.factory"]
    rel_tree = ast.parse("from ..measure import latency\nfrom . import base\n")
    assert list(imported("laser.runtime.auto", SRC / "runtime" / "auto.py", rel_tree)) == [
        "laser.measure", "laser.runtime"]
    assert floor("laser.models.factory") == "models" and floor("laser") == ""
