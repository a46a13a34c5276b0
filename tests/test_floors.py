"""The import floors: common (ground) <- weights <- stages (align, inversion, drag) <- pipeline <- CLI.

Read with `ast`, so function-local imports count too.  A lower floor never imports a higher one.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"common", "weights", "align", "inversion", "drag", "pipeline", "run_pipeline", "benchmarks"}
ALLOWED = {
    "common": {"common"},
    "weights": {"common", "weights"},
    "align": {"common", "weights", "align"},
    "inversion": {"common", "weights", "align", "inversion"},  # align: the face models (identity)
    "drag": {"common", "weights", "align", "inversion", "drag"},  # inversion: load_inversion (its files)
    "pipeline": {"common", "weights", "align", "inversion", "drag", "pipeline"},
}


def project_imports(path: Path):
    """(line, top-level package) of every import of a project package in `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                yield node.lineno, top


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_floor_imports_only_the_floors_below_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    bad = [
        f"{f.relative_to(ROOT)}:{line} imports {top}"
        for f in files
        for line, top in project_imports(f)
        if top not in ALLOWED[package]
    ]
    assert not bad, "\n".join(bad)


def test_the_ground_floor_imports_nothing_of_the_project():
    for f in (ROOT / "common").rglob("*.py"):
        assert [top for _, top in project_imports(f) if top != "common"] == [], f


def test_the_floor_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    from pipeline.edit import run_edit\n    import weights.store\n")
    assert list(project_imports(f)) == [(4, "pipeline"), (5, "weights")]
