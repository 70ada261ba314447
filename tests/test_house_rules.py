"""House rules checked on the source itself.

A name with a leading underscore is private to its module: another module (or a test) that imports
it, or reads it off an imported module, depends on what its owner is free to change. A helper that
is truly shared is made public (with a docstring saying why); a test goes through a public API.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("transforms", "flows", "expectations", "reference", "bench", "tests")


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if ".venv" not in p.parts)


def _module_of(path: Path) -> str:
    """The dotted name a file is imported as (a test helper in tests/ by its bare name, as the tests
    import it)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "tests" and len(parts) == 2:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_of(p) for p in _sources()}
TOP_LEVEL = {name.partition(".")[0] for name in MODULES}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: str | None, level: int, here: str, is_package: bool) -> str:
    """The absolute name of ``from <module> import``, relative imports resolved against ``here``."""
    if level == 0:
        return module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def crossings(source: str, here: str, *, is_package: bool = False, label: str = "") -> list[str]:
    """Every private name of another project module that the code of module ``here`` imports or
    reads off an imported module, as ``label:line: what``."""
    tree = ast.parse(source)
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> project module it is bound to

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            origin = _absolute(node.module, node.level, here, is_package)
            if origin.partition(".")[0] not in TOP_LEVEL:
                continue
            for alias in node.names:
                full = f"{origin}.{alias.name}"
                if full in MODULES:  # a submodule, not a name
                    bound[alias.asname or alias.name] = full
                    if _private(alias.name) and full != here:
                        found.append(f"{label}:{node.lineno}: from {origin} import {alias.name}")
                elif _private(alias.name) and origin != here:
                    found.append(f"{label}:{node.lineno}: from {origin} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] not in TOP_LEVEL:
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[alias.name.partition(".")[0]] = alias.name.partition(".")[0]

    def dotted(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            inner = dotted(node.value)
            return f"{inner}.{node.attr}" if inner is not None else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = dotted(node.value)
            if owner is not None and owner in MODULES and owner != here:
                found.append(f"{label}:{node.lineno}: {owner}.{node.attr}")
    return found


def test_no_private_name_is_imported_or_read_across_modules():
    found = [
        line
        for path in _sources()
        for line in crossings(
            path.read_text(),
            _module_of(path),
            is_package=path.name == "__init__.py",
            label=str(path.relative_to(ROOT)),
        )
    ]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_rule_sees_an_import_and_an_attribute():
    """The checker itself: every form is caught; public names, dunders and a module's own names are not."""
    sample = (
        "from transforms.ingest.netting import _chain_ends, net_corrections\n"
        "from transforms.ingest import netting\n"
        "from . import _helper\n"
        "import transforms.ingest.keys as keys\n"
        "import transforms.money\n"
        "netting._chain_ends\n"
        "transforms.money._private\n"
        "keys.patient_key\n"
        "netting.__name__\n"
    )
    found = crossings(sample, "transforms.ingest.sample")
    assert [line.partition(": ")[2] for line in found] == [
        "from transforms.ingest.netting import _chain_ends",
        "from transforms.ingest import _helper",
        "transforms.ingest.netting._chain_ends",
        "transforms.money._private",
    ]
    assert crossings("from transforms.ingest.netting import _chain_ends\n", "transforms.ingest.netting") == []
