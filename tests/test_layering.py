"""The shape of the code, read from its source: which package imports which, and how big things are.

The layers, top to bottom (an arrow is "may import"):

    main → app → channels → actors → tools → llm
                                  ↘    ↓
                                   stores
    ops, conf: anyone may import them; ops imports only conf; conf imports only conf.

A package imports only packages below it, never one above, so there is no cycle between
packages. `llm`, `stores` and `tools` are the bottom layer, the parts the actors use; among them
`tools` may import `llm` (the MCP toolbox implements the turn loop's `Toolbox` interface, in its
types) and `stores` (the built-in tools act on the facts and reminders stores), and nothing else
crosses between them: `llm` knows no tool server and no store, `stores` know no model. Every
import counts: module-level, inside functions (the lazy imports that keep start-up light) and
under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PACKAGES = ("main", "app", "channels", "actors", "tools", "llm", "stores", "ops", "conf")
"""Our top-level packages (and `main.py`); nothing else in the tree is imported by them."""

MAY_IMPORT: dict[str, frozenset[str]] = {
    "main": frozenset({"app", "channels", "actors", "tools", "llm", "stores", "ops", "conf"}),
    "app": frozenset({"channels", "actors", "tools", "llm", "stores", "ops", "conf"}),
    "channels": frozenset({"actors", "tools", "llm", "stores", "ops", "conf"}),
    "actors": frozenset({"tools", "llm", "stores", "ops", "conf"}),
    "tools": frozenset({"llm", "stores", "ops", "conf"}),
    "llm": frozenset({"ops", "conf"}),
    "stores": frozenset({"ops", "conf"}),
    "ops": frozenset({"conf"}),
    "conf": frozenset(),
}
"""For each package, the other packages of ours it may import."""

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, resolved to an absolute module name."""

    source: Path
    line: int
    module: str

    @property
    def package(self) -> str:
        """The top-level package the import reaches into."""
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line} imports {self.module}"


def package_of(path: Path) -> str:
    """`main` for main.py, else the top-level folder."""
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def source_files() -> list[Path]:
    """main.py and every module of our packages."""
    files = [ROOT / "main.py"]
    for name in PACKAGES[1:]:
        files += sorted((ROOT / name).rglob("*.py"))
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, *, located_at: Path | None = None) -> Iterator[Import]:
    """Every import in the file, wherever it is written (ast.walk reaches into functions and
    `if TYPE_CHECKING:` blocks); relative imports resolved against the file's package, as if the
    file were at `located_at` (default: where it is)."""
    location = located_at or path
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(location).split(".")
    if location.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(location, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield Import(location, node.lineno, node.module or "")
                continue
            base = package[: len(package) - (node.level - 1)]
            yield Import(location, node.lineno, ".".join([*base, *([node.module] if node.module else [])]))


@functools.cache
def cross_package_imports() -> tuple[Import, ...]:
    """Imports from one of our packages into another of ours (read once per test run)."""
    found = []
    for path in source_files():
        for imported in imports_of(path):
            if imported.package in PACKAGES and imported.package != package_of(path):
                found.append(imported)
    return tuple(found)


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in PACKAGES}
    for imported in cross_package_imports():
        graph[package_of(imported.source)].add(imported.package)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = visit(target, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


# -- the import arrows ---------------------------------------------------------------------------------


def test_the_reader_sees_imports_inside_functions_and_type_checking_blocks(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from actors.runtime import Actor\n"
        "def later() -> None:\n    import channels.telegram\n"
        "from . import base\n"
        "from ..conf import settings\n",
        encoding="utf-8",
    )
    found = [imported.module for imported in imports_of(probe, located_at=ROOT / "llm" / "probe.py")]
    assert sorted(found) == ["actors.runtime", "channels.telegram", "conf", "llm", "typing"]


def test_every_package_imports_only_the_layers_below_it() -> None:
    imports = cross_package_imports()
    assert len(imports) > 50, "the reader finds the imports"
    wrong = [str(imported) for imported in imports if imported.package not in MAY_IMPORT[package_of(imported.source)]]
    assert not wrong, "imports against the arrows:\n" + "\n".join(wrong)


@pytest.mark.parametrize("lower", ["llm", "stores", "tools"])
def test_the_bottom_layer_never_imports_actors_channels_or_app(lower: str) -> None:
    wrong = [
        str(imported)
        for imported in cross_package_imports()
        if package_of(imported.source) == lower and imported.package in {"actors", "channels", "app", "main"}
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("base", ["ops", "conf"])
def test_ops_and_conf_import_nothing_of_ours_above_them(base: str) -> None:
    allowed = {"conf"}
    wrong = [
        str(imported)
        for imported in cross_package_imports()
        if package_of(imported.source) == base and imported.package not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle_between_packages() -> None:
    assert find_cycle(package_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_allowed_arrows_point_one_way() -> None:
    graph = {name: set(targets) for name, targets in MAY_IMPORT.items()}
    assert find_cycle(graph) is None


# -- sizes ---------------------------------------------------------------------------------------------


def code_files() -> list[Path]:
    """Every Python file outside tests (packages, main.py, benchmarks, deployment helpers); not what
    the benchmarks write in bench/out (their runtime-only virtualenv among it)."""
    bench = sorted((ROOT / "bench").glob("*.py"))
    for folder in sorted(path for path in (ROOT / "bench").iterdir() if path.is_dir() and path.name != "out"):
        bench += sorted(folder.rglob("*.py"))
    return [*source_files(), *bench, *sorted((ROOT / "deploy").rglob("*.py"))]


def test_no_file_outside_tests_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in code_files()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_outside_tests_is_over_60_lines() -> None:
    long = {}
    for path in code_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = length
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
