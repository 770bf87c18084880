"""The examples in the public modules' docstrings run and print what they show, and the public API of the
optimization toolkit (landscape, optim, functions, plotting) has complete numpydoc docstrings and type hints."""
import ast
import doctest
import importlib
import inspect
import re
import textwrap

import pytest

MODULES = ["linear_model", "optim", "minimize", "landscape", "functions", "plotting", "_closed_form",
           "_iterative", "_streaming", "_chunks", "_dask"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"fastopt.{name}")
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert failures == 0


# ---------------------------------------------------------------- numpydoc completeness
# numpydoc is not a dependency: a small parser of its section headers ("Parameters" over a line of dashes) and of
# the entries of a Parameters section ("name : type" at the section's indentation) suffices for these checks.

NUMPYDOC_MODULES = ["landscape", "optim", "functions", "plotting"]
_HEADER = re.compile(r"^-{3,}$")


def _sections(doc: str) -> dict[str, list[str]]:
    """The docstring's numpydoc sections: header -> its lines (``""`` holds the summary and extended text)."""
    lines = inspect.cleandoc(doc).splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i].strip() and _HEADER.match(lines[i + 1].strip()) \
                and not lines[i].startswith(" "):
            current = lines[i].strip()
            sections[current] = []
            i += 2
            continue
        sections[current].append(lines[i])
        i += 1
    return sections


def _documented_parameters(lines: list[str]) -> set[str]:
    """Names of a Parameters section's entries (``a, b : int`` documents both; ``**kw`` is ``kw``)."""
    names = set()
    for line in lines:
        if line.strip() and not line.startswith((" ", "\t")):
            for name in line.split(" : ")[0].split(","):
                names.add(name.strip().lstrip("*"))
    return names


def _function_node(func) -> ast.FunctionDef | None:
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    node = ast.parse(source).body[0]
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _own_nodes(node):
    """The AST nodes of a function's body, not of the functions or lambdas nested in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield child
        yield from _own_nodes(child)


def _raises(func) -> bool:
    node = _function_node(func)
    return node is not None and any(isinstance(n, ast.Raise) for n in _own_nodes(node))


def _returns_something(func, signature: inspect.Signature) -> bool:
    annotation = signature.return_annotation
    if annotation is not inspect.Signature.empty:
        return annotation not in (None, "None")
    node = _function_node(func)
    return node is not None and any(isinstance(n, ast.Return) and n.value is not None and not (
        isinstance(n.value, ast.Constant) and n.value.value is None) for n in _own_nodes(node))


def _public_api():
    """(qualified name, object, kind) of every public callable of the toolkit's modules.

    Public: the functions and classes each module defines whose names do not start with an underscore (all of
    ``__all__`` but the compiled ``Loss`` and ``Rule`` that ``optim`` re-exports, plus the shared checks such as
    ``landscape.real_scalar``); of a class, the methods and properties it defines itself (``Optimizer.step``,
    ``AdaGrad.init_state``, ``Objective.minibatch_gradient``, ...).
    """
    for module_name in NUMPYDOC_MODULES:
        module = importlib.import_module(f"fastopt.{module_name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj, "function"
            elif inspect.isclass(obj):
                yield f"{module_name}.{name}", obj, "class"
                for attr, member in vars(obj).items():  # (an inherited one is checked with the base defining it)
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        yield f"{module_name}.{name}.{attr}", member, "method"
                    elif isinstance(member, property):
                        yield f"{module_name}.{name}.{attr}", member.fget, "property"


API = sorted(_public_api(), key=lambda item: item[0])


def test_the_public_api_is_found():
    names = {name for name, _, _ in API}
    for expected in ["landscape.condition_number", "optim.make", "optim.AdaGrad.init_state", "optim.Optimizer.step",
                     "functions.get", "functions.Objective.distance_to_minimum", "plotting.plot_risk"]:
        assert expected in names
    for module_name in NUMPYDOC_MODULES:  # every callable of __all__ defined in its module is checked
        module = importlib.import_module(f"fastopt.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
                assert f"{module_name}.{name}" in names


def _signature(obj, kind):
    if kind == "class" and issubclass(obj, BaseException):
        return None  # an exception's constructor is BaseException's
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


@pytest.mark.parametrize(("name", "obj", "kind"), API, ids=[name for name, _, _ in API])
def test_numpydoc_sections(name, obj, kind):
    doc = obj.__doc__  # (not inspect.getdoc: an override must not borrow its base's docstring)
    assert doc and doc.strip(), f"{name} has no docstring"
    sections = _sections(doc)
    summary = "\n".join(sections[""]).strip().split("\n\n")[0]
    assert summary and "\n" not in summary, f"{name}: the summary must be one line, got {summary!r}"
    if kind == "property":
        return
    signature = _signature(obj, kind)
    if signature is None:
        return
    parameters = [p for p in signature.parameters if p not in ("self", "cls")]
    if parameters:
        assert "Parameters" in sections, f"{name} takes {parameters} but has no Parameters section"
        missing = set(parameters) - _documented_parameters(sections["Parameters"])
        assert not missing, f"{name}: Parameters does not document {sorted(missing)}"
    if kind != "class" and _returns_something(obj, signature):
        assert "Returns" in sections or "Yields" in sections, f"{name} returns a value but has no Returns section"
    raisers = [obj] if kind != "class" else [getattr(obj, m) for m in ("__init__", "__post_init__")
                                             if getattr(getattr(obj, m, None), "__module__", None) == obj.__module__]
    if any(_raises(f) for f in raisers):
        assert "Raises" in sections, f"{name} raises on bad input but has no Raises section"


@pytest.mark.parametrize(("name", "obj", "kind"), [a for a in API if a[2] != "class"],
                         ids=[name for name, _, kind in API if kind != "class"])
def test_public_signatures_are_typed(name, obj, kind):
    signature = inspect.signature(obj)
    untyped = [p.name for p in signature.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    assert not untyped, f"{name}: parameters without a type hint: {untyped}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name} has no return type hint"
