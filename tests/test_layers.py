"""The project's layers import downward only: `ref` (the model core) imports nothing else of the
project, `torch_impl` imports only the contract of `ref`, `srnn` (the application) may import
both, and no module takes part in an import cycle. Imports inside functions count too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("ref", "torch_impl", "srnn")
# what torch_impl may take from ref: the configuration, the parameter names, shapes and
# initialisation, the input checks and errors, and the optimizer functions it shares
TORCH_IMPL_MAY_IMPORT = {"ref.config", "ref.params", "ref.checks", "ref.errors", "ref.optim"}


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path):
    """The project modules that the module at `path` imports, anywhere in its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module of the project
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] in PACKAGES}
    return found - {name}


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))}
GRAPH = {name: {m for m in project_imports(path) if m in MODULES} for name, path in MODULES.items()}


def test_the_walk_sees_the_imports_it_should():
    """The checker itself: a relative import, a `from package import module` and an import inside a
    function are all found (srnn.engine imports torch_impl only inside a function)."""
    assert "ref.distributions" in GRAPH["ref.bounds"] and "ref.fast" in GRAPH["ref.bounds"]
    assert "torch_impl.engine" in GRAPH["srnn.engine"]
    assert "srnn.checkpoint" in GRAPH["srnn.rundir"]


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("ref")])
def test_ref_imports_nothing_else_of_the_project(name):
    outside = sorted(m for m in project_imports(MODULES[name]) if not m.startswith("ref"))
    assert not outside, f"{name} imports {outside}: ref/ is the model core and imports only ref"


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("torch_impl")])
def test_torch_impl_imports_only_the_contract_of_ref(name):
    imports = project_imports(MODULES[name])
    outside = sorted(m for m in imports if not m.startswith("torch_impl") and m not in TORCH_IMPL_MAY_IMPORT)
    assert not outside, f"{name} imports {outside}; torch_impl may import from ref only {sorted(TORCH_IMPL_MAY_IMPORT)}"


def test_no_import_cycle():
    """Depth-first search over the module graph; a back edge is a cycle, reported as its path."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_every_section_of_the_contract_that_the_code_cites_exists():
    """Docstrings cite docs/model.md by section ("docs/model.md §4.6"); each cited section is a heading there."""
    import re

    headings = set(re.findall(r"^#+ §([0-9.]+) ", (ROOT / "docs" / "model.md").read_text(), re.M))
    cited = {}
    for path in [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py"))]:
        for first, last in re.findall(r"docs/model\.md §([0-9.]+)(?:–([0-9.]+))?", path.read_text()):
            for section in filter(None, (first, last)):
                cited.setdefault(section, path.name)
    missing = {s: where for s, where in cited.items() if s not in headings}
    assert cited and not missing, f"cited sections that docs/model.md lacks: {missing}"
    assert not any("SPEC.md" in p.read_text() for p in MODULES.values()), "the contract is docs/model.md"
