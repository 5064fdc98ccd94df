"""Functions stay short (issue 14): none in hpo_service, launch or workers over 60 lines but the parser
definitions, and the master's run_master, the story of a run, at most 40."""

from __future__ import annotations

import ast

from tests.conftest import REPO

PACKAGES = ("hpo_service", "launch", "workers")
LIMIT = 60
RUN_MASTER_LIMIT = 40


def is_parser_definition(name: str) -> bool:
    return name == "build_parser" or (name.startswith("add_") and name.endswith("_arguments"))


def function_lengths() -> dict[str, int]:
    """``module:function`` -> its lines, from ``def`` to its last line, for every function and method."""
    lengths = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                    module = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
                    lengths[f"{module}:{node.name}:{node.lineno}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_is_longer_than_the_limit_but_the_parser_definitions() -> None:
    lengths = function_lengths()
    assert len(lengths) > 500  # the walk found the packages' functions
    too_long = {
        name: length
        for name, length in lengths.items()
        if length > LIMIT and not is_parser_definition(name.split(":")[1])
    }
    assert not too_long, too_long


def test_run_master_reads_in_a_few_dozen_lines() -> None:
    (length,) = [
        length
        for name, length in function_lengths().items()
        if name.startswith("hpo_service.master:run_master:")
    ]
    assert length <= RUN_MASTER_LIMIT
