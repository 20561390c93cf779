"""The package's shape: imports flow one way between layers, no import cycles, no file over ~400 lines.

Layers (DESIGN §1): ``core`` <- ``detect`` <- ``compress`` <- ``export``; ``core`` <- ``deploy``; ``stages`` and
``cli`` (and the top-level modules) on top. Every import of every module under ``src/ghostq`` is read from its
syntax tree, module level and inside functions alike. What still breaks a rule is listed below by name; each
list only shrinks (a fixed entry left in it fails too, so the lists stay true).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ghostq"
MAX_LINES = 400

# layer -> the layers it may import from (itself included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "detect": {"core", "detect"},
    "compress": {"core", "detect", "compress"},
    "export": {"core", "detect", "compress", "export"},
    "deploy": {"core", "deploy"},
}
TORCH_FREE = ("core", "deploy")  # what goes on the Jetson without torch
TORCH_MODULES = ("torch", "torchvision", "brevitas")

# (importer, imported module) pairs that still cross a layer the wrong way, each owned by a part of issue #10.
KNOWN_UPWARD: set[tuple[str, str]] = set()

# Module-level import cycles still there, each the set of modules in it.
KNOWN_CYCLES: set[frozenset[str]] = set()

# Files over MAX_LINES still waiting for a split (path relative to src/ghostq).
KNOWN_LONG: set[str] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of the package where it names one."""

    importer: str
    target: str
    line: int
    module_level: bool  # False: inside a function (or a TYPE_CHECKING block): not run on import


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(base: str, name: str, known: dict[str, Path]) -> str:
    """`from base import name`: the submodule base.name where there is one, else base."""
    return f"{base}.{name}" if f"{base}.{name}" in known else base


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = module_level
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = False
            elif isinstance(child, ast.If) and _is_type_checking(child):
                inner = False
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, module_level) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, child, path.name == "__init__.py")
                found.extend(
                    Import(module, _resolve(base, a.name, known), child.lineno, module_level) for a in child.names
                )
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


def _all_imports() -> list[Import]:
    known = _modules()
    return [imp for module, path in known.items() for imp in _imports_of(module, path, known)]


def _layer(module: str) -> str | None:
    """The layer of a ghostq module (None: on top, may import anything)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _upward() -> set[tuple[str, str]]:
    bad = set()
    for imp in _all_imports():
        if not imp.target.startswith("ghostq"):
            continue
        layer = _layer(imp.importer)
        target_layer = imp.target.split(".")[1] if "." in imp.target else "ghostq"
        if layer is not None and target_layer not in ALLOWED[layer]:
            bad.add((imp.importer, imp.target))
    return bad


def _cycles() -> set[frozenset[str]]:
    """Strongly connected components (more than one module, or a module importing itself) of module-level imports."""
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for imp in _all_imports():
        if imp.module_level and imp.target in known:
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.add(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _check(found: set, known: set, what: str) -> None:
    def show(items: set) -> list:
        return sorted(sorted(i) if isinstance(i, frozenset) else i for i in items)

    new, fixed = found - known, known - found
    assert not new, f"{what} (new): {show(new)}"
    assert not fixed, f"{what} fixed: remove them from the known list: {show(fixed)}"


def test_imports_flow_one_way_between_layers():
    _check(_upward(), KNOWN_UPWARD, "imports against the layer order")


def test_no_module_level_import_cycles():
    _check(_cycles(), KNOWN_CYCLES, "cycles")


def test_no_file_over_the_line_limit():
    long = set()
    for path in PACKAGE.rglob("*.py"):
        with path.open(encoding="utf-8") as f:
            if sum(1 for _ in f) > MAX_LINES:
                long.add(str(path.relative_to(PACKAGE)))
    _check(long, KNOWN_LONG, f"files over {MAX_LINES} lines")


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_torch_free_layers_import_no_torch(layer):
    torch_imports = {
        (imp.importer, imp.target)
        for imp in _all_imports()
        if _layer(imp.importer) == layer and imp.target.split(".")[0] in TORCH_MODULES
    }
    assert not torch_imports, f"ghostq.{layer} imports torch: {sorted(torch_imports)}"


def test_the_scan_sees_imports_inside_functions_and_resolves_submodules(tmp_path):
    """The scanner itself: function-level imports count for layers, not for cycles; `from pkg import mod` is mod."""
    known = {"ghostq.core.a": Path(), "ghostq.core": Path(), "ghostq.detect.b": Path()}
    source = "from ghostq.core import a\n\ndef f():\n    from ghostq.detect import b\n"
    path = tmp_path / "x.py"
    path.write_text(source)
    found = _imports_of("ghostq.core.x", path, known)
    assert [(i.target, i.module_level) for i in found] == [("ghostq.core.a", True), ("ghostq.detect.b", False)]


def test_deploy_imports_with_torch_blocked():
    """`import ghostq.deploy` (and its modules) works where torch cannot be imported: the Jetson install."""
    modules = sorted(m for m in _modules() if _layer(m) in TORCH_FREE)
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {TORCH_MODULES!r}:\n"
        "            raise ModuleNotFoundError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "failed = []\n"
        f"for m in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ModuleNotFoundError as err:\n"
        "        if 'blocked' in str(err):\n"
        "            failed.append(f'{m}: {err}')\n"
        "print('\\n'.join(failed))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", out.stdout


# Modules outside ghostq.export that still run the ONNX exporter (export's job).
KNOWN_ONNX_EXPORTERS: set[str] = set()


def test_only_export_runs_the_onnx_exporter():
    """`torch.onnx.export` is called in ghostq.export only; the layers below take its results as arguments."""
    callers = set()
    for module, path in _modules().items():
        if _layer(module) == "export":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("onnx.export"):
                callers.add(module)
    _check(callers, KNOWN_ONNX_EXPORTERS, "ONNX exporter callers outside ghostq.export")
