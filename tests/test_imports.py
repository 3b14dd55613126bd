"""The packages import one way (ternary_core <- rtl <- boards <- sim <- host) and no module
takes part in an import cycle, counting the imports inside functions too (a lazy import
that dodges a cycle is still a cycle)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each package and the packages it may import (besides itself).
LAYERS = {
    "ternary_core": set(),
    "rtl": {"ternary_core"},
    "boards": {"ternary_core", "rtl"},
    "sim": {"ternary_core", "rtl", "boards"},
    "host": {"ternary_core", "rtl", "boards", "sim"},
}


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path, module, modules=()):
    """Every module of the repository that ``path`` imports, anywhere in it: for
    ``from X import y``, ``X.y`` where that is a module (of ``modules``), else ``X``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                      for a in node.names}
    return {m for m in found if m.split(".")[0] in LAYERS}


def _graph():
    modules = {_module_name(p): p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path, name, modules) if m in modules and m != name}
            for name, path in modules.items()}


def test_packages_import_only_downwards():
    upward = sorted(f"{src} imports {dst}" for src, dsts in _graph().items() for dst in dsts
                    if dst.split(".")[0] != src.split(".")[0]
                    and dst.split(".")[0] not in LAYERS[src.split(".")[0]])
    assert not upward, "\n".join(upward)


def test_no_module_is_in_an_import_cycle():
    graph = _graph()
    # Tarjan's strongly connected components
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                cycles.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_lazy_import(tmp_path):
    # the walk counts imports inside functions: this module's own lazy import is seen
    src = "def f():\n    from ternary_core.offload import compiler\n"
    path = tmp_path / "x.py"
    path.write_text(src)
    assert "ternary_core.offload.compiler" in _imports(path, "host.x", {"ternary_core.offload.compiler"})
