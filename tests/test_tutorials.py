"""The tutorials as stored: nine notebooks in order, outputs stripped, each checking its claims,
and listed in the README. (pytest runs the notebooks themselves through nbmake.)"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def cells(path, kind):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def test_nine_tutorials_numbered_in_order():
    assert [p.name[:3] for p in NOTEBOOKS] == [f"{i:02d}_" for i in range(1, 10)], [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_is_stored_without_outputs(path):
    """Versioned notebooks hold only their source: outputs are made by running them (CI does)."""
    code = cells(path, "code")
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        f"{path.name} holds outputs; strip them (jupyter nbconvert --clear-output --inplace {path.name})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_checks_its_claims_on_the_real_code(path):
    source = "".join("".join(c["source"]) for c in cells(path, "code"))
    assert re.search(r"^\s*assert ", source, re.M), f"{path.name} asserts nothing"
    assert re.search(r"^\s*(import|from) (ref|srnn|torch_impl)\b", source, re.M), f"{path.name} imports no project code"
    markdown = "".join("".join(c["source"]) for c in cells(path, "markdown"))
    assert "$" in markdown, f"{path.name} states no equation"


def test_readme_lists_the_tutorials_in_order():
    readme = (ROOT / "README.md").read_text()
    positions = [readme.find(f"tutorials/{p.name}") for p in NOTEBOOKS]
    assert all(i >= 0 for i in positions), "every tutorial is linked from the README"
    assert positions == sorted(positions), "in their order"
