"""The import graph of src/vimi has no cycles: every package can be read (and imported) bottom-up.

Imports are read with `ast`, not by importing: module level, inside functions and under `if TYPE_CHECKING:`
all count, since each is a dependency a reader has to follow.
"""

import ast
from collections import deque
from itertools import pairwise
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "vimi"

Graph = dict[str, dict[str, list[int]]]
"""module -> {imported module: [line numbers of the imports]}."""


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under `package` (a package's name is its folder's)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(package: Path) -> Graph:
    """The modules under `package` that each module imports (other packages' modules are left out)."""
    modules = module_files(package)

    def known(name: str) -> str | None:
        """The module itself, or the innermost enclosing module of ours (`vimi.x.f` -> `vimi.x`)."""
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        package_name = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # `from ..x import y`: relative to the importing module's package
                    anchor = package_name.split(".")[: len(package_name.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg.mod import name` imports the module pkg.mod.name when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in map(known, targets):
                if target is not None and target != name:
                    graph[name].setdefault(target, []).append(node.lineno)
    return graph


def strongly_connected_components(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; the components with more than one module (cycles), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as [a, b, ..., a] (breadth-first)."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node]):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if successor in members and successor not in came_from:
                came_from[successor] = node
                queue.append(successor)
    raise AssertionError(f"{component} is not strongly connected")


def describe_cycles(package: Path) -> list[str]:
    """One line per cycle: its modules and, for one cycle through them, each import's file and line."""
    graph, files = import_graph(package), module_files(package)
    lines = []
    for component in strongly_connected_components(graph):
        cycle = shortest_cycle(graph, component)
        steps = ", ".join(
            f"{a} -> {b} ({files[a].relative_to(package.parent)}:{graph[a][b][0]})"
            for a, b in pairwise(cycle)
        )
        lines.append(f"{len(component)} modules {component}: {steps}")
    return lines


def test_src_vimi_has_no_import_cycles() -> None:
    cycles = describe_cycles(SOURCE)
    assert not cycles, "import cycles in src/vimi (break each so imports go one way):\n" + "\n".join(cycles)


def test_the_check_finds_cycles_through_functions_type_checking_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom pkg import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.c import C\n",
        "sub/__init__.py": "",
        "sub/c.py": "def f():\n    from .. import a\n    from ..d import g\n",
        "d.py": "def g():\n    pass\n",
        "e.py": "from pkg.d import g\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    graph = import_graph(package)
    assert graph["pkg.sub.c"] == {"pkg.a": [2], "pkg.d": [3]}  # `from ..d import g`: g is no module
    assert graph["pkg.b"] == {"pkg.sub.c": [3]} and graph["pkg.e"] == {"pkg.d": [1]}
    assert strongly_connected_components(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert describe_cycles(package) == [
        "3 modules ['pkg.a', 'pkg.b', 'pkg.sub.c']: pkg.a -> pkg.b (pkg/a.py:2), "
        "pkg.b -> pkg.sub.c (pkg/b.py:3), pkg.sub.c -> pkg.a (pkg/sub/c.py:2)"
    ]


def imported_after(statement: str) -> set[str]:
    """The vimi modules a fresh interpreter has loaded after running `statement`."""
    import subprocess
    import sys

    script = f"import sys; {statement}; print('\\n'.join(m for m in sys.modules if m.startswith('vimi')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_diffusion_imports_no_model_and_the_pipeline_no_training_code() -> None:
    diffusion = imported_after("import vimi.diffusion")
    assert "vimi.diffusion.edm" in diffusion  # the check sees what it should
    assert not {m for m in diffusion if m.startswith("vimi.models")}
    pipeline = imported_after("import vimi.pipeline")
    assert "vimi.models.vimi_model" in pipeline
    assert not {m for m in pipeline if m.startswith("vimi.train")}
