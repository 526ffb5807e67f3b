"""The dependency rules of the package, read from the import statements themselves:
runtime modules never import the development package, and the lower layers never reach
up (configuration knows no providers; metrics know no provider registry)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "consumer"


def imported_modules(path: Path, top_level_only: bool = False) -> set[str]:
    """Every consumer.* module a file imports, at any depth (lazy imports included)
    unless `top_level_only`."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("consumer")}


def runtime_modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if "dev" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
    )


def test_the_walk_sees_imports():
    # Guards the guard: the development package itself does import runtime modules.
    assert "consumer.service" in imported_modules(PACKAGE / "dev" / "local_job.py")


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_modules_never_import_the_development_package(path):
    reaching = {name for name in imported_modules(path) if name.startswith("consumer.dev")}
    assert reaching == set()


def test_the_cli_loads_the_development_package_only_for_the_local_command():
    # The CLI dispatches every command, `local` included; it imports that command's
    # module inside the branch that runs it, so `run` and `normalize` never load it.
    main = PACKAGE / "__main__.py"
    assert not any(n.startswith("consumer.dev") for n in imported_modules(main, True))
    assert "consumer.dev.local_job" in imported_modules(main)


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("config.py", "consumer.providers"),
        ("metrics.py", "consumer.providers"),
        ("errors.py", "consumer."),
        ("records.py", "consumer."),
        ("schemas.py", "consumer.providers"),
    ],
)
def test_lower_layers_do_not_reach_up(module, forbidden):
    allowed = {"consumer.errors"} if module != "errors.py" else set()
    if module == "metrics.py":
        allowed.add("consumer.__version__")
        allowed.add("consumer")
    reaching = {
        name for name in imported_modules(PACKAGE / module) if name.startswith(forbidden)
    } - allowed
    assert reaching == set()


def test_the_pipeline_knows_nothing_of_kafka():
    for module in ("pipeline.py", "schemas.py", "records.py", "providers/base.py"):
        source = (PACKAGE / module).read_text()
        assert "confluent_kafka" not in source, module


@pytest.mark.parametrize("command", ["tail.py", "replay.py", "status.py"])
def test_no_operator_command_imports_another(command):
    others = {"consumer.tail", "consumer.replay", "consumer.status"} - {
        f"consumer.{command.removesuffix('.py')}"
    }
    reaching = {
        name
        for name in imported_modules(PACKAGE / command)
        if name in others or name.rsplit(".", 1)[0] in others
    }
    assert reaching == set()


def test_dead_letters_are_read_in_one_place():
    # tail and replay share the reader; neither parses the service's headers itself.
    for command in ("tail.py", "replay.py"):
        assert "consumer.dead_letter_reader" in imported_modules(PACKAGE / command)
        source = (PACKAGE / command).read_text()
        assert "def _parse_int" not in source and "def _jsonable" not in source


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports at module level. `from package import
    submodule` is an edge to the submodule only: Python loads it without running the
    package's __init__ again, so it closes no loop."""
    edges = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
            edges |= submodules or {node.module}
        elif isinstance(node, ast.Import):
            edges |= {a.name for a in node.names} & modules
    return edges


def test_imports_between_modules_have_no_cycle():
    # Module-level imports only: a lazy import inside a function (the CLI's commands)
    # runs after every module is loaded and is how a cycle is deliberately avoided.
    paths = sorted(PACKAGE.rglob("*.py"))
    names = {module_name(p) for p in paths}
    graph = {module_name(p): module_imports(p, names) - {module_name(p)} for p in paths}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        visiting.append(name)
        for imported in sorted(graph.get(name, ())):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert len(done) == len(graph) > 20
