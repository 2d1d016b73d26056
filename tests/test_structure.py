"""The package's structure rules (issue #12), checked on the source.

- No import cycles between `mtl_keras` modules (imports inside functions
  count: a late import hides a cycle, it does not remove it).
- Keras internals (`keras.src` imports, private attributes of Keras objects
  such as `_keras_history`) are read only in `mtl_keras/graph.py` and the
  TensorBoard subclass.
- No module imports a `_private` name from another module (private modules
  with public names are fine).
- `model.py` stays the trainer's outline (a line-count guard).
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "mtl_keras"
# The only modules allowed to touch Keras's internals.
KERAS_INTERNALS_ALLOWED = {
    "mtl_keras/graph.py",
    "mtl_keras/callbacks/task_tensorboard.py",
    # The MultiWorkerMirroredStrategy workaround (keras-team/keras#20585), pinned by its own test.
    "mtl_keras/distribute/keras_fixes.py",
}
PRIVATE_KERAS_ATTRIBUTES = {
    "_keras_history",
    "_inbound_nodes",
    "_outbound_nodes",
    "_nodes_by_depth",
    "_operations",
    "_inputs_struct",
    "_outputs_struct",
    "_layers",
    "_tracker",
    "_functional",
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue  # annotations only: never executed
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in MODULES and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def keras_internals() -> list[str]:
    """`file:line what` for every keras.src import / private Keras attribute."""
    found = []
    for path in MODULES.values():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel in KERAS_INTERNALS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            found += [
                f"{rel}:{node.lineno} imports {n}" for n in names if n.startswith("keras.src")
            ]
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_KERAS_ATTRIBUTES:
                found.append(f"{rel}:{node.lineno} reads .{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in PRIVATE_KERAS_ATTRIBUTES
            ):
                found.append(f"{rel}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return sorted(found)


def test_the_checks_see_the_package():
    graph = import_graph()
    assert "mtl_keras.export.saved_model" in graph
    assert "mtl_keras.export.signature" in graph["mtl_keras.export.saved_model"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_inside_mtl_keras():
    found = cycles(import_graph())
    assert not found, "import cycles (module groups importing each other):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_export_signature_is_a_leaf():
    assert not import_graph()["mtl_keras.export.signature"]


def test_keras_internals_only_in_graph_and_tensorboard():
    found = keras_internals()
    assert not found, (
        "Keras internals outside mtl_keras/graph.py and the TensorBoard subclass:\n"
        + "\n".join(found)
    )


def test_version_has_its_own_module():
    # setup.cfg reads the version without importing the package (and TensorFlow).
    setup_cfg = (PACKAGE.parent / "setup.cfg").read_text()
    assert "version = attr: mtl_keras._version.__version__" in setup_cfg
    graph = import_graph()
    assert not graph["mtl_keras._version"]
    readers = sorted(m for m, p in MODULES.items() if "mtl_keras.__version__" in p.read_text())
    assert not readers, f"read the version from mtl_keras._version instead: {readers}"


def _private_names(module: str, tree: ast.AST, modules: dict) -> list[tuple[int, str]]:
    """(line, dotted name) of each `_private` non-module name `module` imports
    from another `mtl_keras` module."""
    found = []
    for node in _imports(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolve(module, node)
        if source.split(".")[0] != "mtl_keras":
            continue
        for alias in node.names:
            dotted = f"{source}.{alias.name}"
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and dotted not in modules:
                found.append((node.lineno, dotted))
    return found


def private_name_imports() -> list[str]:
    """`file:line name` for every `_private` name (not a module) imported from
    another `mtl_keras` module. Private modules (`weighting._ops`,
    `layers._frozen`) are fine: the line is drawn as torchjd draws it, private
    modules with public names."""
    found = []
    for name, path in MODULES.items():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{rel}:{line} imports {n}" for line, n in _private_names(name, tree, MODULES)]
    return sorted(found)


def test_the_private_name_check_sees_names_not_modules():
    source = (
        "from mtl_keras.model import _helper, MultiTaskModel\n"
        "from mtl_keras.weighting import _ops\n"
        "from keras.src import _private_keras\n"
        "def late():\n"
        "    from mtl_keras.tasks import _kind\n"
    )
    found = _private_names("mtl_keras.cli", ast.parse(source), MODULES)
    assert found == [(1, "mtl_keras.model._helper"), (5, "mtl_keras.tasks._kind")]


def test_no_module_imports_a_private_name_from_another():
    found = private_name_imports()
    assert not found, (
        "private names imported across modules (make them public, or keep them in one module):\n"
        + "\n".join(found)
    )


#: model.py is the trainer's outline (task spec -> builder -> train_step ->
#: weighting -> callbacks -> export); the steps live in their own modules
#: (task_losses, task_metrics, compile_args, parameters, contracts, graph).
MODEL_MAX_LINES = 370


def test_model_py_stays_an_outline():
    lines = len((PACKAGE / "model.py").read_text().splitlines())
    assert lines <= MODEL_MAX_LINES, (
        f"mtl_keras/model.py has {lines} lines (limit {MODEL_MAX_LINES}): move the new logic "
        "into a module of its own and call it from MultiTaskModel."
    )


def test_typecheck_covers_the_core_modules():
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["mypy"]
    files = set(config["files"])
    for core in ("model", "task_losses", "task_metrics", "compile_args", "graph", "representation"):
        assert f"mtl_keras/{core}.py" in files
    missing = [f for f in files if not (PACKAGE.parent / f).exists()]
    assert not missing, f"pyproject.toml [tool.mypy] lists missing files {missing}"
