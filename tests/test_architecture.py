"""The package's shape.

No import circles (not even type-only), the display never imports the job, no backend-name branches.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pdbatch"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (in functions and under TYPE_CHECKING too)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    reach = {m: set(edges[m]) for m in edges}
    changed = True
    while changed:  # transitive closure: a few dozen modules
        changed = False
        for m in reach:
            more = set().union(*(reach[n] for n in reach[m])) - reach[m]
            if more:
                reach[m] |= more
                changed = True
    loops = {frozenset({m, *(n for n in reach[m] if m in reach[n])}) for m in reach if m in reach[m]}
    return sorted(sorted(loop) for loop in loops)


def test_no_module_imports_another_that_imports_it_back():
    assert circles(imports()) == []


def test_the_display_renders_only_and_never_imports_the_job():
    edges = imports()
    for display in [m for m in edges if m.startswith("pdbatch.display.")]:
        assert not [m for m in edges[display] if m.startswith(("pdbatch.jobs", "pdbatch.run"))], display


def folder(module: str) -> str:
    """The stage a module belongs to: its sub-package under pdbatch/, or itself at the top."""
    return ".".join(module.split(".")[:2])


def test_no_stage_folder_imports_another_that_imports_it_back():
    # the layout shows the stages only if they stack: a loop between two folders (even through a
    # type-only import) would make one stage part of another
    edges: dict[str, set[str]] = {}
    for module, targets in imports().items():
        edges.setdefault(folder(module), set()).update(folder(t) for t in targets if folder(t) != folder(module))
    for targets in list(edges.values()):
        for t in targets:
            edges.setdefault(t, set())
    assert circles(edges) == []


def test_the_top_of_the_package_keeps_the_api_and_the_ground_only():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_the_core_never_branches_on_a_backends_name():
    core = [p for m, p in modules().items() if not m.startswith("pdbatch.backends")]
    # a test of which backend it is: its name against a literal, a probed attribute, its class
    branch = re.compile(r"\.name\s*(==|!=|in\b)\s*[\"'({]|getattr\(\s*(self\.)?backend"
                        r"|isinstance\([^)]*\b(Vertex|Local)\b")
    found = [f"{p.name}:{i}" for p in core for i, line in enumerate(p.read_text().splitlines(), 1)
             if branch.search(line) and "backend" in line]
    assert found == []


#: Where a module may still read another object's private attribute, and why.
PRIVATE_READS_ALLOWED = {
    # vendor objects with no public way to the same thing
    ("choose.py", "_time"),  # tqdm's clock, so that a resumed bar keeps its elapsed time
    ("uievents.py", "_parent_ident"),  # ipykernel's shell identity, to process the widget's clicks in a blocked cell
    ("chat.py", "_model"),  # llama-cpp-python's model under its high-level Llama: the vocabulary and token texts
    ("llama.py", "_model"),
    ("rows.py", "_fields"),  # a namedtuple's public API is spelt with an underscore
}
#: The Vertex backend's helper modules are the class split by concern: they use its private clients.
PRIVATE_READS_FOLDERS = ("backends/",)


def private_reads(path: Path) -> list[tuple[int, str]]:
    """``x._name`` where ``x`` is not ``self``/``cls``: another object's, or another module's, private name."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})):
            found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
    return found


def test_no_module_reads_another_objects_private_attributes():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(PRIVATE_READS_FOLDERS):
            continue
        found += [f"{rel}:{line} {text}" for line, text in private_reads(path)
                  if (path.name, text.rpartition(".")[2]) not in PRIVATE_READS_ALLOWED]
    assert found == []


def test_settings_sit_below_the_backends_that_read_them():
    # even a type-only import of Backend would close a loop between the folders (backends -> config)
    assert sorted(m for m in imports()["pdbatch.config"] if m.startswith("pdbatch.backends")) == []


def test_tests_mirror_the_package_folders():
    """tests/ has one folder per sub-package of pdbatch/ (besides its emulators), so a stage's tests sit in its name."""
    tests = Path(__file__).resolve().parent
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in tests.iterdir() if (p / "__init__.py").is_file()} - {"emulators"}
    assert folders == packages, f"tests/ folders without a package: {sorted(folders - packages)}; " \
                                f"packages without tests/ folder: {sorted(packages - folders)}"
    strays = [p.name for p in tests.iterdir() if p.is_dir() and p.name not in folders | {"emulators", "screenshots"}
              and p.name != "__pycache__" and any(p.glob("test_*.py"))]
    assert not strays, f"test files outside the mirrored folders: {strays}"
