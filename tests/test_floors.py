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


# import cycles ----------------------------------------------------------------------------------
SCRIPT_DIRS = {"tests", "benchmarks"}  # run as scripts: their own folder is on sys.path


def module_files(root: Path) -> dict:
    """Dotted module name -> file, for every project .py under `root` (hidden folders left out)."""
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            out[".".join(parts)] = f
    return out


def import_graph(root: Path) -> dict:
    """Module -> the project modules it imports, at the top or inside functions (read with `ast`).

    `from pkg import name` counts `pkg.name` when that is a module, else `pkg`; a script folder's
    modules also find their siblings by bare name."""
    files = module_files(root)
    graph = {}
    for mod, f in files.items():
        package = mod.rsplit(".", 1)[0] if "." in mod else ""
        if f.name == "__init__.py":
            package = mod
        names = []
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                names += [f"{base}.{a.name}" for a in node.names] + [base]
        found = set()
        for name in names:
            candidates = [name]
            if mod.split(".")[0] in SCRIPT_DIRS and package:
                candidates.append(f"{package}.{name}")
            for cand in candidates:
                if cand in files:
                    found.add(cand)
                    break
        graph[mod] = found - {mod}
    return graph


def import_cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_no_import_cycle_in_the_tree():
    graph = import_graph(ROOT)
    assert {"drag.stage", "drag.presets", "run_pipeline", "tests.helpers"} <= set(graph)
    assert "drag.presets" in graph["drag.draw"] and "weights.networks" in graph["drag.engine"]
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle_through_a_function_local_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import f\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg import c\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a as a\n")
    (tmp_path / "pkg" / "d.py").write_text("from pkg.a import x\n")
    graph = import_graph(tmp_path)
    assert graph["pkg.b"] == {"pkg.c", "pkg"} and graph["pkg.d"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


# the shape the middle layer keeps (issue 23) ---------------------------------------------------
CLI_MAX_LINES = 600  # each command parses, calls one function and prints
FUNCTION_MAX_LINES = 60
OPTIONAL_EXTRAS = {"ray", "pipeline.webui.app"}  # imported where used, so the core installs without them


def library_files(root: Path) -> list:
    """The project's .py files outside tests, benchmarks and hidden folders."""
    return [
        f
        for f in sorted(root.rglob("*.py"))
        if not any(p.startswith(".") or p in SCRIPT_DIRS or p == "build" for p in f.relative_to(root).parts)
    ]


def long_functions_and_local_imports(files: list, root: Path):
    """(functions over FUNCTION_MAX_LINES, imports inside functions not of an optional extra)."""
    long, local = [], []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            where = f"{f.relative_to(root)}:{node.lineno} {node.name}"
            if node.end_lineno - node.lineno + 1 > FUNCTION_MAX_LINES:
                long.append(f"{where} ({node.end_lineno - node.lineno + 1} lines)")
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    names = [a.name for a in sub.names]
                elif isinstance(sub, ast.ImportFrom):
                    names = [sub.module or ""]
                else:
                    continue
                local += [f"{where} imports {n}" for n in names if n not in OPTIONAL_EXTRAS]
    return long, local


def test_the_cli_is_thin_functions_are_short_and_imports_are_at_the_top():
    lines = len((ROOT / "run_pipeline.py").read_text().splitlines())
    assert lines < CLI_MAX_LINES, f"run_pipeline.py has {lines} lines: move the logic into pipeline/"
    files = library_files(ROOT)
    assert ROOT / "pipeline" / "edit.py" in files and not any("tests" in f.parts for f in files)
    long, local = long_functions_and_local_imports(files, ROOT)
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
    assert not local, "function-local imports (only optional extras may be):\n" + "\n".join(local)


def test_the_shape_check_sees_long_functions_and_local_imports(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_MAX_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\ndef lazy():\n    import json\n    import ray\n")
    long, local = long_functions_and_local_imports([tmp_path / "m.py"], tmp_path)
    assert long == [f"m.py:1 long ({FUNCTION_MAX_LINES + 1} lines)"]
    assert local == [f"m.py:{FUNCTION_MAX_LINES + 3} lazy imports json"]
