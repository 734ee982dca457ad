"""The structure stays: areas import only downwards, and nothing imports inside a function to dodge a cycle.

docs/architecture.md draws the picture; LAYERS below is the same order in code. A module may import its own
unit and any unit in a lower layer; units in the same layer (the entry points) never import each other
except where ENTRY_EDGES allows it. The test reads the source with ``ast``, so it needs no imports of the
code it checks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tillit"

# Lowest first. Each entry is one layer; a unit is a top-level module or package under tillit/.
LAYERS: list[set[str]] = [
    {"domain"},
    {"config"},
    {"adapters"},
    {"kernel"},  # use-case context, state transitions, the job queue
    {"access"},  # merchants, stores, terminals, API keys, idempotency
    {"notifications"},  # the outbox (mail, SMS, webhook), consent, customer contacts (notify14)
    {"sales"},  # catalogue, orders, cash payments, refunds, ledger postings, till sync, shifts
    {"exceptions"},  # cases for a person to decide
    {"merchants"},  # lifecycle, documents, review, blacklist, limits, provider onboarding (issue 12)
    {"payments"},  # the provider integrity engine, provider accounts, notifications
    {"fees"},  # settle12: fee contracts (read by reconciliation and settlement)
    {"fulfilment"},  # pickup/delivery to confirmed receipt, disputes (refunds through payments)
    {"reconciliation"},  # provider bills, matching, actions, the daily job
    {"settlement"},  # settle12: expected settlement, statements, matching, the daily settlement job
    {"monitoring"},  # analytics, channel health, alerts, metrics, logs
    {"worker"},
    {"bootstrap"},  # the composition root: wires every area and the hooks between them
    {"api", "cli", "till", "tools", "backoffice", "customer"},  # entry points (customer: signed-link pages)
]
# Separate products: the sandbox emulates the providers and shares no code with the adapters; the till is
# a client of the REST API that only shares pure domain code.
INDEPENDENT = {"sandbox": {"sandbox"}, "till": {"till", "domain"}}
ENTRY_EDGES = {("cli", "till"), ("cli", "tools"), ("cli", "sandbox"), ("tools", "sandbox"), ("tools", "till")}
ENTRY_EDGES |= {("api", "backoffice")}  # the API app mounts the back office at /backoffice
ENTRY_EDGES |= {("api", "customer")}  # the API app mounts the customer pages (notify14)
# The demo's scripted walk (tools/demo_walk.py) runs the first half of its story through the API app
# in-process on an injected clock that starts days ago (issue 14: the reminder without the wait).
ENTRY_EDGES |= {("tools", "api")}
# Entry points may import lazily inside a function, for start-up time only (a CLI command loads what it
# runs: in the cli, uvicorn in `serve` and the till's web app in `till`). Areas and adapters never do.
LAZY_IMPORTS_ALLOWED = {"cli", "sandbox"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("tillit", *parts)).removesuffix(".__init__")


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tillit"


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(imported tillit module, line, inside a function) for every import of tillit code."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module == "tillit" or child.module.startswith("tillit."):
                    for alias in child.names:
                        # `from package import module` imports the module, not only the package
                        candidate = f"{child.module}.{alias.name}"
                        target = candidate if _is_module(candidate) else child.module
                        found.append((target, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("tillit."):
                        found.append((alias.name, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _graph() -> dict[str, list[tuple[str, str, int, bool]]]:
    graph: dict[str, list[tuple[str, str, int, bool]]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        for target, line, lazy in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            graph[module].append((target, str(path.relative_to(SRC.parent.parent)), line, lazy))
    return graph


def _layer_of(unit: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    return None


def test_every_unit_has_a_place() -> None:
    units = {_unit(_module_name(p)) for p in SRC.rglob("*.py")} - {"tillit"}
    placed = set().union(*LAYERS) | set(INDEPENDENT)
    assert units <= placed, f"units without a layer in LAYERS: {sorted(units - placed)}"


def test_imports_only_point_down() -> None:
    upward: list[str] = []
    for module, targets in _graph().items():
        src = _unit(module)
        for target, where, line, _lazy in targets:
            dst = _unit(target)
            if dst in (src, "tillit"):
                continue
            if src in INDEPENDENT and src not in {u for layer in LAYERS for u in layer}:
                if dst not in INDEPENDENT[src]:
                    upward.append(f"{where}:{line} {module} -> {target} (a separate product)")
                continue
            if dst == "sandbox" and (src, dst) not in ENTRY_EDGES:
                upward.append(f"{where}:{line} {module} -> {target} (the sandbox is a separate product)")
                continue
            if src == "till" and dst not in INDEPENDENT["till"]:
                upward.append(f"{where}:{line} {module} -> {target} (the till only shares domain code)")
                continue
            a, b = _layer_of(src), _layer_of(dst)
            if a is None or b is None:
                continue  # reported by test_every_unit_has_a_place
            if b > a or (b == a and (src, dst) not in ENTRY_EDGES):
                upward.append(f"{where}:{line} {module} -> {target} ({src} may not import {dst})")
    assert not upward, "imports against the one direction:\n" + "\n".join(upward)


def test_no_imports_inside_functions() -> None:
    lazy: list[str] = []
    for module, targets in _graph().items():
        if _unit(module) in LAZY_IMPORTS_ALLOWED:
            continue
        lazy.extend(f"{where}:{line} imports {target} inside a function" for target, where, line, is_lazy
                    in targets if is_lazy)
    assert not lazy, "import at the top of the module (or invert the dependency):\n" + "\n".join(lazy)


def test_no_cycles_between_modules() -> None:
    graph = {m: {t for t, *_ in ts} for m, ts in _graph().items()}
    modules = set(graph)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            target = nxt if nxt in modules else nxt.rsplit(".", 1)[0]
            if target not in modules:
                continue
            if target == node or node.startswith(f"{target}.") or target.startswith(f"{node}."):
                continue  # a package and its own modules
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            walk(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
