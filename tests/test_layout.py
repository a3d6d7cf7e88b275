"""The code's shape (docs/architecture.md, "Layout rules"): short functions, a library that does not
reach into the tools or the scripts, one-way layers with no import cycle, and no block of code
written twice.

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


# -- (d) one-way layers: no import cycle, no import up a layer ---------------------------------------
def import_graph(paths: list[Path], root: Path = ROOT) -> dict[str, dict[str, int]]:
    """``{module file: {imported module file: first line}}`` among ``paths``, every import
    counted (at the top, inside a function, under ``TYPE_CHECKING``): each one may run."""
    files = {_module_of(p, root): p.relative_to(root).as_posix() for p in paths}
    graph: dict[str, dict[str, int]] = {}
    for path in paths:
        module, rel = _module_of(path, root), path.relative_to(root).as_posix()
        edges = graph.setdefault(rel, {})
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            base, *names = _imported(node, module, path.name == "__init__.py")
            if isinstance(node, ast.Import):
                targets = [base, *names]
            else:  # ``from pkg import mod`` loads mod; ``from mod import name`` loads mod
                targets = [n for n in names if n in files] or [base]
            for target in (files.get(t) for t in targets):
                if target and target != rel:
                    edges[target] = min(edges.get(target, node.lineno), node.lineno)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Each group of modules that import each other in a loop (Tarjan's strongly connected
    components of two or more), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(out)


def read_layers(text: str) -> tuple[list[tuple[int, list[str]]], set[tuple[str, str]]]:
    """The page's layer table (``| 3 | `t2v2t/data/`, `t2v2t/recipes.py` | ... |`` under
    "## Layers") and its allowed upward imports (``| `a.py` | `b.py` | why |`` under "### The
    import that runs up")."""
    layers: list[tuple[int, list[str]]] = []
    allowed: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").lower()
            continue
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if section == "layers" and len(cells) >= 2 and cells[0].isdigit():
            layers.append((int(cells[0]), re.findall(r"`([\w/.*]+)`", cells[1])))
        elif section == "the import that runs up" and len(cells) >= 3 and cells[0].startswith("`"):
            allowed.add((cells[0].strip("`"), cells[1].strip("`")))
    return layers, allowed


def layer_of(rel: str, layers: list[tuple[int, list[str]]]) -> int | None:
    """The layer of a module file: the longest pattern that holds it (a file, ``dir/``, or
    ``dir/*.py`` for the files directly in dir) wins."""
    best: tuple[int, int] | None = None
    for number, patterns in layers:
        for pat in patterns:
            if pat.endswith("/*.py"):
                hit = rel.startswith(pat[:-4]) and "/" not in rel[len(pat) - 4 :]
            else:
                hit = rel == pat or (pat.endswith("/") and rel.startswith(pat))
            if hit and (best is None or len(pat) > best[0]):
                best = (len(pat), number)
    return best[1] if best else None


def upward_imports(
    graph: dict[str, dict[str, int]], layers: list[tuple[int, list[str]]]
) -> list[str]:
    """``a.py:12 (layer 3) imports b.py (layer 5)`` for each import up the layers, and
    ``a.py is on no layer`` for each module the table does not place."""
    out = [f"{rel} is on no layer" for rel in sorted(graph) if layer_of(rel, layers) is None]
    for rel, edges in sorted(graph.items()):
        mine = layer_of(rel, layers)
        for target, line in sorted(edges.items()):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                out.append(f"{rel}:{line} (layer {mine}) imports {target} (layer {theirs})")
    return out


def test_graph_finders_see_cycles_and_upward_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "t2v2t"
    (pkg / "data").mkdir(parents=True)
    (pkg / "errors.py").write_text("import os\n")
    (pkg / "data" / "a.py").write_text("from t2v2t.data import b\nfrom t2v2t import errors\n")
    (pkg / "data" / "b.py").write_text("def f():\n    from t2v2t.data.c import g\n")
    (pkg / "data" / "c.py").write_text("from . import a\nfrom ..train import loop\n")
    (pkg / "train.py").write_text("from t2v2t.data.a import x\n")
    (pkg / "cmd.py").write_text("import t2v2t.train\n")
    graph = import_graph(_sources(tmp_path, "t2v2t"), tmp_path)
    assert graph["t2v2t/data/b.py"] == {"t2v2t/data/c.py": 2}
    assert import_cycles(graph) == [
        ["t2v2t/data/a.py", "t2v2t/data/b.py", "t2v2t/data/c.py", "t2v2t/train.py"]
    ]
    page = (
        "## Layers\n| layer | modules | may import |\n|---|---|---|\n"
        "| 1 | `t2v2t/errors.py` | nothing |\n| 2 | `t2v2t/data/` | 1 |\n"
        "| 3 | `t2v2t/train.py` | 1-2 |\n| 4 | `t2v2t/*.py` | all |\n"
        "### The import that runs up\n| from | to | why |\n|---|---|---|\n"
        "| `t2v2t/data/c.py` | `t2v2t/train.py` | a reason |\n"
    )
    layers, allowed = read_layers(page)
    assert allowed == {("t2v2t/data/c.py", "t2v2t/train.py")}
    assert [layer_of(f"t2v2t/{m}.py", layers) for m in ("errors", "data/a", "train", "cmd")] == [
        1,
        2,
        3,
        4,
    ]
    assert upward_imports(graph, layers) == [
        "t2v2t/data/c.py:2 (layer 2) imports t2v2t/train.py (layer 3)"
    ]
    # Without the first and the catch-all row, two modules stand on no layer.
    assert upward_imports(graph, layers[1:3])[:2] == [
        "t2v2t/cmd.py is on no layer",
        "t2v2t/errors.py is on no layer",
    ]


def _library_graph() -> dict[str, dict[str, int]]:
    return import_graph(_sources(ROOT, *PACKAGES))


def test_no_import_cycle_in_the_library() -> None:
    cycles = import_cycles(_library_graph())
    assert not cycles, (
        f"{len(cycles)} import cycle(s); the modules of each import each other in a loop "
        '(docs/architecture.md, "Layers"):\n' + "\n".join(" <-> ".join(c) for c in cycles)
    )


def test_errors_module_imports_nothing_of_the_project() -> None:
    # Every expected error derives from errors.ExpectedError, so errors.py needs none of them.
    assert _library_graph()["t2v2t/errors.py"] == {}


def test_imports_run_down_the_layers() -> None:
    layers, allowed = read_layers((ROOT / "docs" / "architecture.md").read_text())
    assert layers, 'docs/architecture.md has no "## Layers" table'
    assert len(allowed) <= 1, f"at most one import may run up a layer, the page names {allowed}"
    offenders = [
        o
        for o in upward_imports(_library_graph(), layers)
        if not any(o.startswith(f"{a}:") and f"imports {b} " in o for a, b in allowed)
    ]
    assert not offenders, (
        'imports up the layers of docs/architecture.md ("Layers"): move the code down, or '
        "place a new module in the table:\n" + "\n".join(offenders)
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


# -- (e) the documentation's pages, sections and links ----------------------------------------------
# Code cites a page and a section as ``docs/storage.md, "Object storage"`` (or README.md, "Setup"),
# or a heading's anchor as ``docs/storage.md#object-storage``; pages link each other in Markdown.
MAX_README_LINES = 300
_PAGE = r"(?<![\w/.-])((?:README|docs/[\w-]+)\.md)"
_CITATION = re.compile(
    _PAGE + r"(?:#([\w-]+)|,?\s+\"([^\"]+)\"|,\s+'([^']+)'|,\s+([A-Z][a-z]+\b))?"
)
_LINK = re.compile(r"\]\(([^)\s]+?\.md)?(?:#([^)\s]+))?\)")
# Where citations live: the library, the commands, the tests, the build files.
_CITING = ("t2v2t", "preprocessing", "scripts", "tests")
_CITING_FILES = ("Makefile", "pyproject.toml")


def headings(markdown: str) -> list[str]:
    """The text of every heading of a Markdown page, code blocks left out."""
    out, fence = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.+?)\s*#*\s*$", line)):
            out.append(m.group(1))
    return out


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def doc_citations(text: str) -> list[tuple[str, str | None, str | None]]:
    """``(page, section, anchor)`` for every page a text cites; a citation wrapped over comment or
    docstring lines is joined first. An unquoted word after ``page,`` is kept as a section so that
    the check asks for quotes (``README.md, Setup`` reads as a section named "Setup" only if quoted
    the same way everywhere)."""
    flat = re.sub(r"\s*\n\s*(?:#+\s*)?", " ", text)
    out = []
    for m in _CITATION.finditer(flat):
        page, anchor_, dq, sq, bare = m.groups()
        if bare:
            out.append((page, f"unquoted section {bare!r}", None))
        else:
            out.append((page, dq or sq, anchor_))
    return out


def missing_citations(files: list[Path], root: Path = ROOT) -> list[str]:
    """``file: page, "section"`` for every citation of a page or a heading that does not exist."""
    bad = []
    for path in files:
        for page, section, anchor_ in doc_citations(path.read_text()):
            target = root / page
            where = f"{path.relative_to(root).as_posix()}: {page}"
            if not target.is_file():
                bad.append(f"{where} (no such page)")
                continue
            heads = headings(target.read_text())
            if section is not None and section not in heads:
                bad.append(f'{where}, "{section}" (no such heading)')
            if anchor_ is not None and anchor_ not in {anchor(h) for h in heads}:
                bad.append(f"{where}#{anchor_} (no such heading)")
    return bad


def broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    """``page: target#anchor`` for every relative Markdown link to a missing page or heading."""
    bad = []
    for page in pages:
        text = page.read_text()
        for target, anchor_ in _LINK.findall(text):
            dest = (page.parent / target).resolve() if target else page
            if "://" in target or not (target or anchor_):
                continue
            if not dest.is_file():
                bad.append(f"{page.relative_to(root)}: {target} (no such page)")
            elif anchor_ and anchor_ not in {anchor(h) for h in headings(dest.read_text())}:
                bad.append(f"{page.relative_to(root)}: {target}#{anchor_} (no such heading)")
    return bad


def test_doc_citation_reader(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# T\n## Setup\n```\n# Not a heading\n```\n")
    (tmp_path / "docs" / "storage.md").write_text("# S\n## Object storage\n### The `node` cache\n")
    code = tmp_path / "m.py"
    code.write_text(
        '"""One (docs/storage.md, "Object\nstorage") and (README.md, "Setup").\n'
        '    # wrapped (docs/storage.md,\n    # "The `node` cache") and docs/storage.md#object-storage\n'
        'bench/README.md is another file; (README.md, "Not a heading"), README.md, Setup,\n'
        '(docs/gone.md), docs/storage.md#the-node-cache-x, (docs/storage.md, \'Object storage\')"""\n'
    )
    assert missing_citations([code], tmp_path) == [
        'm.py: README.md, "Not a heading" (no such heading)',
        "m.py: README.md, \"unquoted section 'Setup'\" (no such heading)",
        "m.py: docs/gone.md (no such page)",
        "m.py: docs/storage.md#the-node-cache-x (no such heading)",
    ]
    assert anchor("The GPU recipe (`make demo` with CUDA)") == "the-gpu-recipe-make-demo-with-cuda"
    page = tmp_path / "README.md"
    page.write_text(
        "# T\n## Setup\n[a](#setup) [b](docs/storage.md#object-storage) [c](https://x.org/y.md#z)\n"
        "[d](#nope) [e](docs/storage.md#the-node-cache) [f](docs/none.md)\n"
    )
    assert broken_links([page], tmp_path) == [
        "README.md: #nope (no such heading)",
        "README.md: docs/none.md (no such page)",
    ]


def _citing_files() -> list[Path]:
    files = [
        p
        for pkg in _CITING
        for p in (ROOT / pkg).rglob("*")
        if p.is_file() and p.suffix in {".py", ".sh", ".yaml", ".toml"}
    ]
    files += [ROOT / name for name in _CITING_FILES]
    return sorted(f for f in files if f.resolve() != Path(__file__).resolve())


def test_every_cited_page_and_section_exists() -> None:
    files = _citing_files()
    cited = [c for f in files for c in doc_citations(f.read_text())]
    bad = missing_citations(files)
    assert len(cited) >= 50 and not bad, f"citations of missing pages or sections: {bad}"


def test_docs_links_reach_real_pages_and_headings() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    bad = broken_links(pages)
    assert not bad, f"links to missing pages or headings: {bad}"


def test_readme_is_short_and_links_every_docs_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= MAX_README_LINES, "README.md grew past 300 lines"
    linked = {target for target, _ in _LINK.findall(text)}
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 7 and not [p for p in pages if p not in linked], (
        f"docs pages README.md does not link: {[p for p in pages if p not in linked]}"
    )


def test_each_topic_page_lists_its_sections() -> None:
    # Every docs page but the developers' one opens with a contents list of its ## sections.
    bad = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name == "architecture.md":
            continue
        text = page.read_text()
        contents = (
            text.split("\n## Contents\n", 1)[1].split("\n\n", 1)[0]
            if "\n## Contents\n" in text
            else ""
        )
        listed = {a for _, a in _LINK.findall(contents)}
        sections = [h for h in re.findall(r"^## (.+)$", text, re.M) if h != "Contents"]
        bad += [f"{page.name}: {h}" for h in sections if anchor(h) not in listed]
    assert not bad, f"sections missing from their page's contents list: {bad}"


def test_every_docs_page_names_real_files_and_tests() -> None:
    # The topic pages name modules, scripts and the tests that hold their promises
    # (docs/reliability.md, "Promises and the tests that hold them"): each must exist.
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        paths, tests = _doc_references(page.read_text())
        missing += [f"{page.name}: {p}" for p in sorted(paths) if not (ROOT / p).is_file()]
        missing += [
            f"{page.name}: tests/{file}::{name}"
            for file, name in tests
            if not (ROOT / "tests" / file).is_file()
            or not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)
        ]
    assert not missing, f"docs name what is not there: {missing}"
