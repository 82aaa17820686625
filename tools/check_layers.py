"""Check that loopfast's imports flow one way: no cycle, no layer broken.

Usage: python tools/check_layers.py [SRC_DIR]   (default: src/loopfast next to this file)

Every import of a loopfast module counts, wherever it is written (inside a
function, under ``if TYPE_CHECKING:``): a module may import modules of its own
layer or of lower ones, never of a higher one, and the import graph has no
cycle. Exit status 0 when both hold; otherwise 1, with one line per problem.
docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "loopfast"

# Lowest first. A module belongs to the first layer with a pattern matching it:
# "x" is that module, "x.*" every module inside package x.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["constants", "policy", "filters", "_core", "_core.stdlib", "_ring",
              "_core.ringcore"]),
    ("rules", ["_core.addresses", "_core.options", "_core.filtering", "compat", "_winsock",
               "_winsock.*"]),
    ("fastpath", ["_fastpath", "_fastpath.*"]),
    ("sockets", ["_core.sockets", "_core.sockets.*"]),
    ("api", ["_core.helpers", "_core.patch", "_core.aio_transport", "_core.aio_selector",
             "_core.aio_spin", "asyncio", "_core.uvloop_hook", ""]),
    ("tools", ["_tools", "_tools.*", "bench", "bench.*", "__main__"]),
]


def module_names(src: Path) -> dict[str, Path]:
    """Dotted name (without the package prefix; "" for the package) -> file."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    for path in src.glob("*.c"):
        names[path.stem] = path
    return names


# Modules of the tools layer that may import the public modules and each other only.
PUBLIC = {"", "constants", "policy", "filters", "compat", "asyncio"}
PUBLIC_ONLY = ["bench", "bench.*"]


def public_only(name: str) -> bool:
    """True for a module that may import only the public API (the benchmark)."""
    return any(name.startswith(p[:-1]) if p.endswith(".*") else name == p for p in PUBLIC_ONLY)


def layer_of(name: str) -> int:
    """The index in LAYERS of module *name*.

    Raises:
        LookupError: no layer names the module.
    """
    for index, (_label, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern.endswith(".*"):
                if name.startswith(pattern[:-1]):
                    return index
            elif name == pattern:
                return index
    raise LookupError(name)


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every loopfast module *name*'s file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, _longest_known(alias.name[len(PACKAGE) + 1:], known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                target = node.module[len(PACKAGE) + 1:]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                yield node.lineno, sub if sub in known else _longest_known(target, known)


def _longest_known(name: str, known: dict[str, Path]) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def check(src: Path) -> list[str]:
    """Every problem found under *src*, as lines of text (empty when all holds)."""
    known = module_names(src)
    problems = []
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        if path.suffix != ".py":
            continue
        try:
            mine = layer_of(name)
        except LookupError:
            problems.append(f"{path}: module {name or PACKAGE!r} is in no layer "
                            "(add it to LAYERS in tools/check_layers.py)")
            continue
        for line, target in imports(name, path, known):
            if target == name or (target == "" and name == ""):
                continue
            graph.setdefault(name, set()).add(target)
            try:
                theirs = layer_of(target)
            except LookupError:
                continue  # reported for the target's own file
            if public_only(name) and not public_only(target) and target not in PUBLIC:
                problems.append(f"{path}:{line}: {name} imports {target}, which is not loopfast's "
                                "public API (the benchmark uses only that)")
            if theirs > mine:
                problems.append(
                    f"{path}:{line}: {name or PACKAGE} (layer {LAYERS[mine][0]}) imports "
                    f"{target or PACKAGE} (layer {LAYERS[theirs][0]}, higher)")
    problems.extend(f"import cycle: {' -> '.join(n or PACKAGE for n in cycle)}"
                    for cycle in _cycles(graph))
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected part of *graph* that has one."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main(argv: list[str] | None = None) -> int:
    """Check the tree; print problems; 0 when there are none, 1 otherwise."""
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "src" / PACKAGE
    problems = check(src)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    modules = sum(1 for p in module_names(src).values() if p.suffix == ".py")
    print(f"layers: {modules} modules in {len(LAYERS)} layers, imports one way, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
