"""The code's shape (docs/architecture.md, "Layout rules"): short functions, a library that does not
reach into the tools or the scripts, and no block of code written twice.

Each check walks the real tree and lists every offender, so a failure says where to look; each
finder is first tried on a small hand-made tree with a known answer.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("t2v2t", "preprocessing")
MAX_FUNCTION_LINES = 80
MIN_REPEATED_LINES = 6
# The library is t2v2t/ except the tools built on it (t2v2t/tools/), plus preprocessing/. api.py
# counts as library: it is the entry point users import, so it must not depend on the tools.
TOOLS = ("t2v2t", "tools")


def _sources(root: Path, *packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (root / pkg).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


# -- (a) function length ---------------------------------------------------------------------------
def long_functions(
    paths: list[Path], root: Path = ROOT, limit: int = MAX_FUNCTION_LINES
) -> list[str]:
    """``file:line name (N lines)`` for every function or method longer than ``limit`` lines,
    counted from its ``def`` line to its last line (decorators not counted)."""
    out = []
    for path in paths:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    rel = path.relative_to(root).as_posix()
                    out.append(f"{rel}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_long_function_finder_counts_def_to_last_line(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    body = "".join(f"        x{i} = {i}\n" for i in range(79))
    src.write_text(
        f"class A:\n    @staticmethod\n    def long():\n{body}        return 0\n\n"
        "def short():\n    return 1\n"
    )
    assert long_functions([src], tmp_path, limit=80) == ["m.py:3 long (81 lines)"]
    assert long_functions([src], tmp_path, limit=81) == []


def test_no_function_longer_than_80_lines() -> None:
    offenders = long_functions(_sources(ROOT, *PACKAGES))
    assert not offenders, (
        f"{len(offenders)} function(s) longer than {MAX_FUNCTION_LINES} lines; split them into "
        "named steps:\n" + "\n".join(offenders)
    )


# -- (b) the library does not import the tools or the scripts ----------------------------------------
def _module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute module names an import statement may load (``from a import b``: a and a.b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{a.name}" for a in node.names)]


def _is_sys_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def layering_violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """``file:line what`` for each import of a script or use of sys.path and, outside
    t2v2t/tools/, each import of t2v2t.tools."""
    scripts = {p.stem for p in (root / "scripts").glob("*.py")}
    out = []
    for path in paths:
        module, rel = _module_of(path, root), path.relative_to(root).as_posix()
        is_tool = path.relative_to(root).parts[:2] == TOOLS
        for node in ast.walk(_tree(path)):
            if _is_sys_path(node):
                out.append((node.lineno, f"{rel}:{node.lineno} touches sys.path"))
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(node, module, path.name == "__init__.py"):
                if not is_tool and (name == "t2v2t.tools" or name.startswith("t2v2t.tools.")):
                    out.append((node.lineno, f"{rel}:{node.lineno} imports {name} (a tool)"))
                elif name.split(".")[0] in {"scripts", *scripts}:
                    out.append((node.lineno, f"{rel}:{node.lineno} imports {name} (scripts/)"))
    return [text for _, text in sorted(set(out))]


def test_layering_finder_sees_each_kind(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "plot_run.py").write_text("")
    (tmp_path / "t2v2t" / "data").mkdir(parents=True)
    bad = tmp_path / "t2v2t" / "data" / "bad.py"
    bad.write_text(
        "import sys\nfrom ..tools import demo\nimport t2v2t.tools.probe\n"
        "from plot_run import plot_run\nsys.path.insert(0, 'x')\n"
        "from t2v2t.data import shards\nfrom . import plan\nimport os.path\n"
    )
    assert layering_violations([bad], tmp_path) == [
        "t2v2t/data/bad.py:2 imports t2v2t.tools (a tool)",
        "t2v2t/data/bad.py:2 imports t2v2t.tools.demo (a tool)",
        "t2v2t/data/bad.py:3 imports t2v2t.tools.probe (a tool)",
        "t2v2t/data/bad.py:4 imports plot_run (scripts/)",
        "t2v2t/data/bad.py:4 imports plot_run.plot_run (scripts/)",
        "t2v2t/data/bad.py:5 touches sys.path",
    ]
    # A tool may import other tools, but not the scripts either.
    tool = tmp_path / "t2v2t" / "tools" / "demo.py"
    tool.parent.mkdir()
    tool.write_text("from t2v2t.tools import probe\nimport plot_run\n")
    assert layering_violations([tool], tmp_path) == [
        "t2v2t/tools/demo.py:2 imports plot_run (scripts/)"
    ]


def test_library_never_imports_tools_or_scripts() -> None:
    offenders = layering_violations(_sources(ROOT, *PACKAGES))
    assert not offenders, (
        "t2v2t/ and preprocessing/ must not import scripts/ nor edit sys.path, and the library "
        "(all but t2v2t/tools/) must not import t2v2t.tools:\n" + "\n".join(offenders)
    )


# -- (c) no block of six lines written twice ---------------------------------------------------------
_PUNCTUATION = re.compile(r"^[\s()\[\]{},:;.]*$")


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, whitespace-folded text) of the lines that count: not blank, not a comment,
    not lone punctuation, not part of an import statement; trailing comments cut off."""
    text = path.read_text()
    comments: dict[int, int] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.start[1]
    imports = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports.update(range(node.lineno, node.end_lineno + 1))
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = " ".join(line[: comments.get(number, len(line))].split())
        if number not in imports and line and not _PUNCTUATION.match(line):
            out.append((number, line))
    return out


def _merge(runs: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Overlapping windows of one repeat -> one (a_start, a_end, b_start, b_end) span each."""
    merged: list[tuple[int, int, int, int]] = []
    for run in sorted(runs, key=lambda r: (r[2], r[0])):
        last = merged[-1] if merged else None
        if last and last[0] <= run[0] <= last[1] and run[2] <= last[3]:
            merged[-1] = (last[0], max(last[1], run[1]), last[2], max(last[3], run[3]))
        else:
            merged.append(run)
    return merged


def repeated_blocks(
    paths: list[Path], root: Path = ROOT, size: int = MIN_REPEATED_LINES
) -> list[str]:
    """``a.py:10-17 = b.py:40-47`` for every run of ``size`` or more counted lines that stands
    in two places (a sliding window of ``size`` lines, hashed)."""
    seen: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for path in paths:
        lines = _code_lines(path)
        rel = path.relative_to(root).as_posix()
        for i in range(len(lines) - size + 1):
            window = lines[i : i + size]
            digest = hashlib.sha1("\n".join(t for _, t in window).encode()).hexdigest()
            seen[digest].append((rel, window[0][0], window[-1][0]))
    pairs: dict[tuple[str, str], list[tuple[int, int, int, int]]] = defaultdict(list)
    for places in seen.values():
        for other in places[1:]:
            pairs[(places[0][0], other[0])].append((*places[0][1:], *other[1:]))
    return [
        f"{a}:{s[0]}-{s[1]} = {b}:{s[2]}-{s[3]}"
        for (a, b), runs in sorted(pairs.items())
        for s in _merge(runs)
    ]


def test_repeat_finder_ignores_comments_imports_and_whitespace(tmp_path: Path) -> None:
    block = "".join(f"total += values[{i}] * weights[{i}]\n" for i in range(7))
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import os\n" + block + "x = 1\n")
    b.write_text(
        "from os import (\n    path,\n)\n\n# the same, spaced out and commented\n"
        + block.replace(" += ", "  +=  ").replace("[0]\n", "[0]  # first\n", 1)
        + "(\n)\n"
    )
    assert repeated_blocks([a, b], tmp_path) == ["a.py:2-8 = b.py:6-12"]
    b.write_text(block.replace("[5]", "[9]"))  # line 6 differs: five shared lines, then two
    assert repeated_blocks([a, b], tmp_path) == []
    assert repeated_blocks([a, b], tmp_path, size=5) == ["a.py:2-6 = b.py:1-5"]


def test_no_block_of_six_lines_repeated_in_the_library() -> None:
    offenders = repeated_blocks(_sources(ROOT, *PACKAGES))
    assert not offenders, (
        f"{len(offenders)} block(s) of {MIN_REPEATED_LINES}+ identical lines stand in two places; "
        "keep one and call it:\n" + "\n".join(offenders)
    )


# -- docs/architecture.md names real things -----------------------------------------------------------
def _doc_references(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Source paths named in the page, and the (test file, test function) pairs it cites;
    ``::name`` after ``test_x.py::other`` belongs to test_x.py."""
    paths = set(re.findall(r"`((?:t2v2t|preprocessing|scripts)/[\w/]+\.py)`", text))
    tests: list[tuple[str, str]] = []
    for line in text.splitlines():
        current = None
        for file, name in re.findall(r"`(test_\w+\.py)?(?:::(\w+))?`", line):
            current = file or current
            if name and current:
                tests.append((current, name))
    return paths, tests


def test_doc_reference_reader() -> None:
    paths, tests = _doc_references(
        "| x | `t2v2t/a.py` `test_a.py::one`, `::two`; `test_b.py` (all), `test_c.py::three` |"
    )
    assert paths == {"t2v2t/a.py"}
    assert tests == [("test_a.py", "one"), ("test_a.py", "two"), ("test_c.py", "three")]


def test_architecture_page_names_real_modules_and_tests() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths, tests = _doc_references(text)
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    missing += [
        f"tests/{file}::{name}"
        for file, name in tests
        if not (ROOT / "tests" / file).is_file()
        or not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
    ]
    for file in set(re.findall(r"`(test_\w+\.py)", text)):
        if not (ROOT / "tests" / file).is_file():
            missing.append(f"tests/{file}")
    assert len(tests) >= 30 and not missing, (
        f"docs/architecture.md names what is not there: {missing}"
    )
    # Every library module has its line in the page's table of modules.
    modules = {p.relative_to(ROOT).as_posix() for p in _sources(ROOT, *PACKAGES)}
    unlisted = sorted(m for m in modules if m not in paths and not m.endswith("__init__.py"))
    assert not unlisted, f"modules without a line in docs/architecture.md: {unlisted}"
