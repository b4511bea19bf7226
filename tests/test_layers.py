"""The package flows one way: every import of every module (those inside functions included, and
module names given to importlib as constant strings) goes to the same layer or one below, and
no group of modules imports itself round in a circle. Layers, lowest first, as
docs/architecture.md draws them."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "attnviz"

# lowest first; a module belongs to the layer of the longest prefix that names it
LAYERS = (
    ("attnviz.errors", "attnviz.kinds", "attnviz.system", "attnviz.callable_module"),
    ("attnviz.models",),
    ("attnviz.data",),
    ("attnviz.capture",),
    ("attnviz.attribution",),
    ("attnviz.scores",),
    ("attnviz.analysis",),
    ("attnviz",),  # the package's face: the public names, nothing above analysis
    ("attnviz.render",),
    ("attnviz.training", "attnviz.tools"),
    ("attnviz.cli", "attnviz.app", "attnviz.bench", "attnviz.train", "attnviz.evaluate",
     "attnviz.__main__"),
)
# imports inside functions are allowed only for these (heavy, or optional) packages
DEFERRABLE = {"gradio", "gradio_client", "plotly", "matplotlib", "cv2", "captum", "scipy",
              "huggingface_hub", "playwright", "requests", "safetensors", "tqdm", "torch",
              "fastapi", "starlette", "uvicorn", "psutil"}


def _modname(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_modname(p): p for p in sorted(PKG.rglob("*.py"))}


def layer_of(mod: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (mod == n or mod.startswith(n + ".")) and n.count(".") > depth:
                best, depth = i, n.count(".")
    assert best is not None, f"{mod} is in no layer: add it to LAYERS"
    return best


def _target(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _resolve(name: str) -> str | None:
    """The attnviz module an import of ``name`` loads (a name that is not a module: its parent)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(mod: str) -> list[tuple[str, int, bool]]:
    """[(imported attnviz module, line, inside a function)] of one module."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "attnviz" or a.name.startswith("attnviz."):
                        out.append((_resolve(a.name), child.lineno, f))
            elif isinstance(child, ast.ImportFrom):
                tgt = _target(mod, path.name == "__init__.py", child)
                if tgt == "attnviz" or tgt.startswith("attnviz."):
                    for a in child.names:
                        out.append((_resolve(f"{tgt}.{a.name}"), child.lineno, f))
            elif (isinstance(child, ast.Call) and child.args
                  and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str)
                  and getattr(child.func, "attr", getattr(child.func, "id", "")) in
                  ("import_module", "__import__")
                  and child.args[0].value.startswith("attnviz")):
                out.append((_resolve(child.args[0].value), child.lineno, f))
            visit(child, f)
    visit(tree, False)
    return [(t, line, f) for t, line, f in out if t and t != mod]


GRAPH = {m: imports(m) for m in MODULES}


def test_every_import_names_a_module_that_exists():
    """``from attnviz.x import y`` needs a module attnviz.x (an import inside a function that
    names a moved module fails only when it runs: caught here)."""
    bad = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                tgt = _target(mod, path.name == "__init__.py", node)
                if (tgt == "attnviz" or tgt.startswith("attnviz.")) and tgt not in MODULES:
                    bad.append(f"{mod}:{node.lineno} imports from {tgt}, which is no module")
            elif isinstance(node, ast.Import):
                bad += [f"{mod}:{node.lineno} imports {a.name}, which is no module"
                        for a in node.names
                        if a.name.startswith("attnviz.") and a.name not in MODULES]
    assert not bad, "\n".join(bad)


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_import_goes_up_a_layer():
    up = [f"{m}:{line} imports {t} (layer {layer_of(t)} above {layer_of(m)})"
          for m, edges in GRAPH.items() for t, line, _ in edges if layer_of(t) > layer_of(m)]
    assert not up, "\n".join(up)


def _cycles(graph: dict[str, set]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in graph:
            if v not in index:
                strong(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_no_import_cycle_even_through_imports_inside_functions():
    graph = {m: {t for t, _, _ in edges} for m, edges in GRAPH.items()}
    # importing a package's submodule runs the package's __init__ first
    for m in list(graph):
        parent = m.rpartition(".")[0]
        while parent:
            if parent in MODULES and parent != m:
                graph[m] |= set()  # the parent runs first; its imports are its own edges
            parent = parent.rpartition(".")[0]
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_inside_functions_only_defer_heavy_packages():
    """An attnviz import inside a function hides an edge from readers; only the documented
    deferrals (a heavy package behind it) may do so."""
    inner = [f"{m}:{line} imports {t} inside a function"
             for m, edges in GRAPH.items() for t, line, f in edges
             if f and not m.startswith(("attnviz.app", "attnviz.cli"))]
    assert not inner, "\n".join(inner)


def test_the_checker_sees_cycles_and_upward_edges():
    """The checker itself can fail: a made-up graph with a cycle and an upward edge is caught."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("attnviz.render.figures") > layer_of("attnviz.capture.maps")
    with pytest.raises(AssertionError):
        layer_of("numpy")


# ------------------------------------------------------------------ documented names resolve
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NAME = re.compile(r"(?<![\w./-])attnviz(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def documented_names() -> set[str]:
    names = set()
    for doc in DOCS:
        for m in NAME.finditer(doc.read_text(encoding="utf-8")):
            name = m.group(0).rstrip(".")
            if name.endswith((".py", ".md", ".txt", ".json", ".safetensors", ".zip", ".png")):
                continue
            names.add(name)
    return names


def _resolves(name: str) -> bool:
    import importlib
    parts = name.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_every_dotted_name_in_the_docs_resolves():
    names = documented_names()
    assert len(names) > 20, "the docs name fewer attnviz names than expected: is the regex right?"
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, "names in README.md / docs/*.md that do not resolve:\n" + "\n".join(missing)


def test_public_names_are_modules_and_functions_at_once():
    import attnviz
    import attnviz.analysis.inspect as inspect_module
    assert callable(attnviz.explain) and hasattr(attnviz.explain, "Explainer")
    assert callable(attnviz.inspect) and inspect_module is attnviz.inspect
    assert hasattr(attnviz.inspect, "Analysis") and hasattr(attnviz.explain, "model_lock")
    assert callable(attnviz.capture) and hasattr(attnviz.capture, "AttentionMap")
    assert hasattr(attnviz.metrics, "deletion_auc") and hasattr(attnviz.metrics, "pointing_game")
