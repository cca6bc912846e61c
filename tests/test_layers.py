"""The floors of the house, checked: no package imports one it must not (issue 13).

``fedpa`` (the method) is the ground floor; ``export`` (build time), ``edge`` (what a device runs)
and ``aggregator`` (the server, never torch) stand on it; ``harness`` (demo, umbrella CLI, simulated
fleet, launcher) stands on all of them. Every import is read from the source (AST): module-level,
inside functions and under ``if TYPE_CHECKING:`` alike, since each is a dependency on that floor.

``aggregator`` also must not import a ``fedpa`` module that loads torch when imported: that set is
computed from the module-level imports (what runs at import time), following parent packages'
``__init__`` too, so an indirect ``import torch`` three modules down is found.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedpa", "export", "edge", "aggregator", "harness")


@dataclass(frozen=True)
class Rule:
    """``package`` must not import any module named by ``forbidden`` (the module or anything under it),
    except the modules under ``allowed`` (a narrower name: ``fedpa.data.schema`` inside ``fedpa.data``)."""

    package: str
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    no_torch_loaders: bool = False  # nor a project module whose import loads torch
    why: str = ""


RULES = (
    Rule("fedpa", ("export", "edge", "aggregator", "harness"), why="the ground floor imports nothing above it"),
    Rule("aggregator", ("torch", "executorch", "export", "edge", "harness"), no_torch_loaders=True,
         why="the server stays torch-free and knows no client or build code"),
    # The device runs exported programs: not the eager model, not training, not the build pipeline,
    # not the dataset loaders. Of fedpa.data it needs only the feature schema a bundle carries.
    Rule("edge", ("fedpa.model", "fedpa.train", "fedpa.data", "export", "harness"), allowed=("fedpa.data.schema",),
         why="the device runs only what a phone runs"),
    Rule("export", ("edge", "aggregator", "harness"), why="build time knows neither device nor server"),
)


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name of the imported module
    line: int
    at_import: bool  # runs when the importing module is imported (module level, not TYPE_CHECKING)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, module: str, *, is_package: bool, known: set[str] | frozenset[str] = frozenset()
               ) -> list[Import]:
    """Every import in ``source`` as absolute module names; ``from m import x`` also yields ``m.x``
    when ``m.x`` is a module in ``known`` (importing a submodule by name)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, at_import) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ""
            if node.level:  # relative: resolved against this module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
            target = ".".join(p for p in (base, node.module or "") if p)
            found.append(Import(target, node.lineno, at_import))
            found.extend(Import(f"{target}.{alias.name}", node.lineno, at_import) for alias in node.names
                         if f"{target}.{alias.name}" in known or node.module is None)  # `from . import sub`
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            at_import = False  # a function body runs when called, not when the module is imported
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, at_import)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, at_import)

    visit(ast.parse(source), True)
    return found


def project_sources(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[Path, bool]]:
    """Module name → (file, is a package ``__init__``) for every ``.py`` of the project's packages."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            out[".".join(parts)] = (path, is_package)
    return out


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def torch_loaders(graph: dict[str, list[Import]]) -> set[str]:
    """Project modules whose import loads torch: through module-level imports, parents' ``__init__`` included."""
    loads: set[str] = set()
    changed = True
    while changed:
        changed = False
        for module, imports in graph.items():
            if module in loads:
                continue
            reached = {p for i in imports if i.at_import for p in (*_parents(i.target), i.target)}
            reached.update(_parents(module))
            if any(_under(t, "torch") or _under(t, "executorch") or t in loads for t in reached):
                loads.add(module)
                changed = True
    return loads


def violations(root: Path = ROOT, rules: tuple[Rule, ...] = RULES, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``file:line: module imports target (rule)`` for every import that breaks a rule."""
    sources = project_sources(root, packages)
    known = set(sources)
    graph = {m: imports_of(p.read_text(encoding="utf-8"), m, is_package=pkg, known=known)
             for m, (p, pkg) in sources.items()}
    loaders = torch_loaders(graph)
    out = []
    for rule in rules:
        for module, imports in graph.items():
            if not _under(module, rule.package):
                continue
            for imp in imports:
                banned = any(_under(imp.target, f) for f in rule.forbidden) and not any(
                    _under(imp.target, a) for a in rule.allowed)
                loads_torch = rule.no_torch_loaders and imp.target in loaders and not _under(imp.target, rule.package)
                if banned or loads_torch:
                    where = sources[module][0].relative_to(root)
                    reason = "loads torch when imported" if loads_torch and not banned else rule.why
                    out.append(f"{where}:{imp.line}: {module} imports {imp.target} ({rule.package}: {reason})")
    return sorted(set(out))


def test_the_tree_keeps_its_floors():
    found = violations()
    assert not found, "layer rules broken:\n" + "\n".join(found)


def test_every_package_is_read():
    """A checker that finds no modules finds no violations: make sure it reads each floor."""
    sources = project_sources()
    for package in PACKAGES:
        assert sum(_under(m, package) for m in sources) >= 3, package
    assert {"harness.demo", "harness.fleet", "harness.server_process", "edge.device", "aggregator.main"} <= set(sources)


def test_a_device_loads_no_loaders_model_or_build_code_at_run_time():
    """Importing every ``edge`` module (what a device runs) loads none of the floors it must not import,
    not even through a package ``__init__`` (``fedpa.data``'s re-exports are lazy for this)."""
    modules = sorted(m for m in project_sources() if _under(m, "edge"))
    banned = ("fedpa.data.loaders", "fedpa.data.build", "fedpa.data.synthetic", "fedpa.model", "fedpa.train",
              "torch", "export", "harness")
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {{'torch', 'export', 'harness'}} "
            f"or m in {banned!r}))")

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


# ---------------------------------------------------------------- the checker itself, on a synthetic tree


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def clean(tmp_path: Path) -> dict[str, str]:
    """A tiny tree that keeps every rule (the allowed exception and a torch-free fedpa module used)."""
    return {
        "fedpa/__init__.py": "",
        "fedpa/errors.py": "class FedPAError(Exception): ...\n",
        "fedpa/model.py": "import torch\n",
        "fedpa/data/__init__.py": "from fedpa.data.loaders import load\n",
        "fedpa/data/loaders.py": "def load(): ...\n",
        "fedpa/data/schema.py": "class FeatureSchema: ...\n",
        "edge/__init__.py": "",
        "edge/device.py": "from fedpa.data.schema import FeatureSchema\nfrom fedpa.errors import FedPAError\n",
        "aggregator/__init__.py": "",
        "aggregator/main.py": "from fedpa import errors\n",
        "export/__init__.py": "",
        "export/bundle.py": "import torch\nfrom fedpa.model import *\n",
        "harness/__init__.py": "",
        "harness/demo.py": "import edge.device\nimport export.bundle\nimport aggregator.main\n",
    }


def test_a_clean_tree_passes(tmp_path, clean):
    assert violations(_tree(tmp_path, clean)) == []


@pytest.mark.parametrize(("name", "text", "expected"), [
    # the demo's old sin: the ground floor reaching up, inside a function
    ("fedpa/demo.py", "def run():\n    from edge.device import Device\n", "fedpa.demo imports edge.device"),
    ("fedpa/cli.py", "from harness import demo\n", "fedpa.cli imports harness"),
    ("fedpa/cli2.py", "from harness import demo\n", "fedpa.cli2 imports harness.demo"),  # a submodule by name
    ("aggregator/x.py", "import torch.nn\n", "aggregator.x imports torch.nn"),
    ("aggregator/y.py", "from fedpa.model import Net\n", "aggregator.y imports fedpa.model (aggregator: loads torch"),
    # torch two imports down: fedpa.helper → fedpa.model → torch
    ("aggregator/z.py", "from fedpa.helper import f\n", "aggregator.z imports fedpa.helper (aggregator: loads torch"),
    ("edge/fleet.py", "from fedpa.data import load_dataset\n", "edge.fleet imports fedpa.data"),
    ("edge/train.py", "if TYPE_CHECKING:\n    from fedpa.train import pretrain\n", "edge.train imports fedpa.train"),
    ("export/up.py", "def f():\n    import aggregator.main\n", "export.up imports aggregator.main"),
])
def test_the_checker_finds_a_broken_rule(tmp_path, clean, name, text, expected):
    files = {**clean, "fedpa/helper.py": "from fedpa.model import *\n", name: text}
    found = violations(_tree(tmp_path, files))
    assert any(expected in line for line in found), found
    assert all(line.startswith(name) for line in found), found  # only the planted module is blamed


def test_a_torch_import_inside_a_function_does_not_make_a_loader():
    graph = {"fedpa.lazy": imports_of("def f():\n    import torch\n", "fedpa.lazy", is_package=False),
             "fedpa.eager": imports_of("from fedpa.lazy import f\n", "fedpa.eager", is_package=False),
             "fedpa.pkg": imports_of("from . import sub\n", "fedpa.pkg", is_package=True),
             "fedpa.pkg.sub": imports_of("import torch\n", "fedpa.pkg.sub", is_package=False)}
    assert torch_loaders(graph) == {"fedpa.pkg", "fedpa.pkg.sub"}
