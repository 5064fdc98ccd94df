"""Import contracts (issue 14, item 5): the boundaries of docs/architecture.md's table, checked on the
source (every import statement, also those inside functions and under TYPE_CHECKING) and, for analysis, in
a fresh interpreter.

- ``hpo_service`` never imports ``workers``, ``analysis`` or ``launch``; nothing in the packages imports
  ``launch`` (only its own modules do); ``analysis`` imports no ``workers`` and of ``hpo_service`` only its
  standard-library modules ``vocabulary``, ``run_files`` and ``brackets``.
- ``workers`` import no master-side module of ``hpo_service`` (:data:`MASTER_SIDE`), directly or through
  another module.
- ``analysis`` loads neither torch nor Pyro4: every analysis module imported in a subprocess.
- No import cycles among the project's modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ANALYSIS_MAY_IMPORT

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hpo_service", "workers", "launch", "analysis")
# hpo_service's modules that only the master uses; workers must not import them (docs/architecture.md).
# Of the studies package only its options record is shared: it is part of the run's spec, which workers read.
MASTER_SIDE = (
    "hpo_service.__main__", "hpo_service.master", "hpo_service.resume", "hpo_service.settings",
    "hpo_service.sweeps.values", "hpo_service.sweeps.plan", "hpo_service.sweeps.study_masters",
    "hpo_service.sweeps.narrow", "hpo_service.sweeps.space_edit", "hpo_service.sweeps.setup",
    "hpo_service.space", "hpo_service.space_file", "hpo_service.presets",
    "hpo_service.buildable", "hpo_service.hpbandster.fixed_master", "hpo_service.hpbandster.dispatch",
    "hpo_service.hpbandster.optimizers", "hpo_service.hpbandster.bohb_generator",
    "hpo_service.hpbandster.result_log",
)  # fmt: skip
# Known exceptions (none since the HpBandSter layer was split into master and worker modules).
IGNORED_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(path: Path, name: str) -> set[str]:
    """Every module named by an import statement of ``path`` (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (``from package import module`` counts as the module)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        targets = {target for target in imported_names(path, name) if target in modules and target != name}
        graph[name] = {target for target in targets if (name, target) not in IGNORED_EDGES}
    return graph


def in_package(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


GRAPH = project_graph()


def test_the_graph_sees_the_packages() -> None:
    assert len(GRAPH) > 60
    assert "hpo_service.tls" in GRAPH["workers.settings"]  # a from-import of a module resolves to it


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("hpo_service", ("workers", "analysis", "launch")),
        ("workers", ("analysis", "launch")),
        ("analysis", ("workers", "launch")),
    ],
)
def test_packages_import_only_what_the_architecture_allows(package: str, forbidden: tuple[str, ...]) -> None:
    offending = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        if in_package(source, (package,))
        for target in targets
        if in_package(target, forbidden)
    )
    assert not offending, offending


def test_analysis_uses_only_the_standard_library_modules_of_hpo_service() -> None:
    """``hpo_service.vocabulary`` (names and aliases of hyperparameters), ``hpo_service.run_files`` (the
    run directory's file names) and ``hpo_service.brackets`` (Hyperband's job counts) import nothing of the
    project; other modules of ``hpo_service`` bring Pyro4 or ConfigSpace along."""
    used = {
        target
        for source, targets in GRAPH.items()
        if in_package(source, ("analysis",))
        for target in targets
        if in_package(target, ("hpo_service",))
    }
    assert used <= {"hpo_service", *ANALYSIS_MAY_IMPORT}, used
    assert not any(GRAPH[module] for module in ANALYSIS_MAY_IMPORT)


def test_workers_import_no_master_side_module() -> None:
    offending = {
        source: sorted(target for target in reachable(GRAPH, source) if in_package(target, MASTER_SIDE))
        for source in GRAPH
        if in_package(source, ("workers",))
    }
    assert not {source: targets for source, targets in offending.items() if targets}


def test_no_import_cycles() -> None:
    cycles = sorted(source for source in GRAPH if source in reachable(GRAPH, source))
    assert not cycles, cycles


def test_analysis_loads_neither_torch_nor_pyro() -> None:
    names = sorted(name for name in GRAPH if in_package(name, ("analysis",)) and name != "analysis.__main__")
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'Pyro4', 'hpbandster') if m in sys.modules)))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(completed.stdout) == []
