"""The house rules of docs/architecture.md, checked on the package's own imports (every import statement, also
those inside functions): no import circle; handles and backends never reach the views, the magics, the API,
IPython or ipywidgets; the request builders import nothing that does I/O or UI."""

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sm_r_magic"

# module -> what it must never import (sm_r_magic modules by prefix, and third-party packages)
HANDLES = ("sm_r_magic.handle", "sm_r_magic.jobs", "sm_r_magic.predictor", "sm_r_magic.workflow.execution")
UI = ("sm_r_magic.views", "sm_r_magic.magics", "sm_r_magic.api", "sm_r_magic.cli", "IPython", "ipywidgets")
FORBIDDEN = {
    **{handle: UI for handle in HANDLES},
    "sm_r_magic.backends": UI,
    "sm_r_magic.spec": UI + ("sm_r_magic.backends", "boto3", "botocore", "subprocess", "sm_r_magic.config"),
    "sm_r_magic.views": ("sm_r_magic.magics", "sm_r_magic.api", "sm_r_magic.backends"),
    "sm_r_magic.workflow": UI + ("sm_r_magic.backends", "sm_r_magic.pipelines"),
}


def module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path):
    """Every module an import statement in `path` names (absolute names; `from . import x` gives pkg.x)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from . import spec`
    return found


def package_graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
        graph[name].update(i for i in imports_of(path) if not i.startswith("sm_r_magic"))
    return modules, graph


def test_handles_backends_and_builders_import_nothing_they_must_not():
    modules, graph = package_graph()
    broken = []
    for name in modules:
        for owner, banned in FORBIDDEN.items():
            if name == owner or name.startswith(owner + "."):
                broken += [f"{name} imports {target}" for target in sorted(graph[name])
                           if any(target == b or target.startswith(b + ".") for b in banned)]
    assert not broken, "\n".join(broken)


def test_no_import_circle():
    modules, graph = package_graph()
    internal = {name: {m for m in deps if m in modules} for name, deps in graph.items()}
    # a package's __init__ re-exporting its own submodules is not a circle of the house
    for name, deps in internal.items():
        internal[name] = {d for d in deps if not (d.startswith(name + ".") and modules[name].name == "__init__.py")}
    circles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(internal[node]):
            if state.get(dep) == "open":
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for name in sorted(internal):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


LOAD_EXT = ("from IPython.testing.globalipapp import start_ipython\n"
            "start_ipython().run_line_magic('load_ext', 'sm_r_magic')")


@pytest.mark.parametrize("module", ["sm_r_magic", "sm_r_magic.api", LOAD_EXT])
def test_loading_the_extension_imports_nothing_heavy(module):
    """`%load_ext sm_r_magic` (and the plain API) import neither boto3, botocore, ipywidgets nor pandas: a cell
    pays for them only when it uses them."""
    import subprocess
    import sys

    load = module if module == LOAD_EXT else f"import {module}"
    # Imports made by this thread count; the warm-up thread may read botocore's model in the background.
    code = ("import sys, threading\n"
            "HEAVY = ('boto3', 'botocore', 'ipywidgets', 'pandas', 'sm_r_magic.views.job')\n"
            "seen = []\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if threading.current_thread() is threading.main_thread() and any(\n"
            "                name == h or name.startswith(h + '.') for h in HEAVY):\n"
            "            seen.append(next(h for h in HEAVY if name == h or name.startswith(h + '.')))\n"
            "sys.meta_path.insert(0, Spy())\n"
            f"{load}\n"
            "print(','.join(sorted(set(seen))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
