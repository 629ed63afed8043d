"""The package's shape: no import circles, and the library never imports the application.

Every import statement counts (module level, inside functions, under TYPE_CHECKING), and so does
an import made by name at run time: a string naming one of the package's modules (what
``importlib.import_module``, ``import_children`` or ``__import__`` would be given), and a call of
those with a name computed at run time, which only the known mechanisms may make; all read with
the standard library's ast. Layers, lowest first: ``tasks`` (prompts, lm-eval hooks),
``harness`` (the library), ``baselines`` / ``methods`` / ``leaderboard`` (built on it), ``app``
(command line, orchestration, sweeps). Inside ``harness`` the rooms are layers too, lowest first:
core, data, personas, metrics, scoring, runs, method, training, then the pipeline's own modules
(runner, plan, conformance) at its top. An import may only go to the same or a lower layer;
``__main__`` modules are entry points and may import the application.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "persona_bench"
LAYERS = {"tasks": 0, "harness": 1, "baselines": 2, "methods": 2, "leaderboard": 2, "app": 3}
HARNESS_ROOMS = {"core": 0, "data": 1, "personas": 2, "metrics": 3, "scoring": 4, "runs": 5, "method": 6, "training": 7}
HARNESS_TOP = {"runner", "plan", "conformance"}  # the pipeline, above every room


def module_name(path: Path) -> str:
    if not path.is_relative_to(PACKAGE.parent):  # a probe written by a test
        return path.stem
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """persona_bench modules imported anywhere in ``path`` (``from x import y`` counts x.y when it is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text())
    group_names = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)  # entry-point groups share a module's name
                   and any(isinstance(t, ast.Name) and t.id.endswith("ENTRY_POINT_GROUP") for t in node.targets)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in group_names:  # imported by name
            found.add(node.value)
    return {m for m in found if m in known and m != name}


def computes_import_names(path: Path) -> bool:
    """Whether ``path`` imports a module whose name it computes at run time (other than its own children)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and call_name(node) in BY_NAME and node.args:
            first = node.args[0]
            if not isinstance(first, ast.Constant) and not (isinstance(first, ast.Name) and first.id == "__name__"):
                return True
    return False


BY_NAME = {"import_module", "import_children", "__import__"}


def call_name(node: ast.Call) -> str:
    """``f`` of ``f(...)`` or ``x.f(...)``."""
    return node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else ""


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def layer(module: str) -> tuple[int, int] | None:
    """(package layer, room layer inside harness); None for the package root."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return None
    room = 0
    if parts[1] == "harness" and len(parts) > 2:
        room = HARNESS_ROOMS.get(parts[2], len(HARNESS_ROOMS))
    return LAYERS[parts[1]], room


def test_every_harness_module_lives_in_a_room():
    """A newcomer reads the data flow in harness/'s folder names: nothing new lands loose beside the pipeline."""
    loose = sorted(m for m in import_graph() if m.startswith("persona_bench.harness.")
                   and m.split(".")[2] not in HARNESS_ROOMS and m.split(".")[2] not in HARNESS_TOP)
    assert loose == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    graph = import_graph()
    # a package's __init__ importing its own modules is not a circle of code
    graph = {m: {t for t in targets if not (t.startswith(m + ".") or m.startswith(t + ".") and t != "persona_bench")} for m, targets in graph.items()}
    assert cycles(graph) == []


def test_imports_go_down_the_layers_only():
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        if not source.endswith("__main__")
        for target in targets
        if layer(source) is not None and layer(target) is not None and layer(target) > layer(source)
    ]
    assert upward == []


def test_imports_by_computed_name_are_the_known_mechanisms():
    """Where a module name is computed, it comes from the user or an entry point, never names a layer above."""
    computed = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if computes_import_names(p))
    assert computed == [
        "persona_bench",  # the public names' lazy import (PUBLIC, a table of its own modules)
        "persona_bench.app.executors",  # a Ray / submitit worker importing the user's --import modules
        "persona_bench.harness.method.base",  # import_children (a package's own children) and the user's --import modules
    ]


def test_the_checks_can_fail(tmp_path):
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer("persona_bench.harness.scoring.lm") < layer("persona_bench.app.cli")
    assert layer("persona_bench.harness.scoring.steerer") < layer("persona_bench.harness.method.base") < layer("persona_bench.harness.runner")
    by_name = tmp_path / "by_name_probe.py"
    by_name.write_text('import importlib\nimportlib.import_module("persona_bench.app.cli")\nimportlib.import_module(f"x{1}")\n')
    assert imported_modules(by_name, {"persona_bench.app.cli"}) == {"persona_bench.app.cli"} and computes_import_names(by_name)
