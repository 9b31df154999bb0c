"""The house rules that keep kerasnets easy to change, checked on the source itself."""

import ast
from pathlib import Path

import kerasnets
from kerasnets.profiling import model_table

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kerasnets"


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """``{module: {kerasnets modules it imports}}``, function-local and relative imports
    included. ``from kerasnets.data import splits`` is an edge to ``kerasnets.data.splits``;
    edges to a package itself (its ``__init__``, which only re-exports) are left out,
    as ``shared/tools/import_cycles.py`` does."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets |= {f"{base}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name and t not in packages}
    return graph


def find_cycles(graph):
    cycles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_no_import_cycles_between_modules():
    graph = import_graph()
    assert "kerasnets.registry" in graph and len(graph) > 30
    assert "kerasnets.interop.torchvision" in graph["kerasnets.interop.imagenet"]
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_registry_imports_no_family_and_no_interop():
    graph = import_graph()
    assert graph["kerasnets.registry"] == set()


def test_readme_model_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert model_table() in readme, (
        "README.md's model table is out of date: replace it with the output of "
        "`python scripts/summary.py`")
    assert len(kerasnets.list_models()) == model_table().count("\n| `")
