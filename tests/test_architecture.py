"""The layering of ARCHITECTURE.md, checked on the package's sources: module-level imports form no cycle, only
the estimator touches its fitted state, and every solver declares what it supports."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import fastopt
from fastopt import _solvers
from fastopt._result import Solver

PACKAGE = Path(fastopt.__file__).resolve().parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def module_imports(name: str) -> set[str]:
    """The fastopt modules that ``name`` imports at module level (not inside functions: deferred imports)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # if TYPE_CHECKING: annotations only
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "fastopt":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastopt."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fastopt.")}
    return found & set(MODULES)


def test_module_imports_form_no_cycle():
    graph = {m: module_imports(m) for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join([*path, m])}"
        state[m] = "open"
        for n in sorted(graph[m]):
            visit(n, [*path, m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


def test_each_module_imports_first(tmp_path):
    """Every module imports first, with no other fastopt module loaded (no order-dependent cycle), and
    ``import fastopt`` never imports Dask. One interpreter, the fastopt modules dropped between imports."""
    code = f"""
import importlib, sys
for module in {[m for m in MODULES if m != "__main__"]!r}:
    for loaded in [k for k in sys.modules if k.startswith("fastopt") and k != "fastopt._kernels"]:
        del sys.modules[loaded]
    importlib.import_module("fastopt" if module == "__init__" else "fastopt." + module)
    if module == "__init__" and "dask" in sys.modules:
        sys.exit("import fastopt imported dask")
"""
    # cwd elsewhere: from a clone's root, "-c" would import the unbuilt source tree instead of the installed package
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr


def test_only_the_estimator_touches_its_fitted_state():
    private = re.compile(r"\b(estimator|est|self\.estimator)\._[a-z]\w*")
    state = re.compile(r"\b_(solver_state|solver_name|n_targets)\b|\._apply\(")
    for m in MODULES:
        if m == "linear_model":
            continue
        text = (PACKAGE / f"{m}.py").read_text()
        assert not private.search(text), f"{m} reads or writes an estimator's private attribute"
        assert not state.search(text), f"{m} names the estimator's fitted state"


def test_solvers_declare_their_capabilities():
    for name, solver in _solvers.SOLVERS.items():
        assert isinstance(solver, Solver)
        assert solver.name == name
        assert solver.losses
        assert solver.chunked in (None, "statistics", "epochs", "passes")
