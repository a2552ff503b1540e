"""Closed doors between modules: no module of omr_tus imports another module's private (`_x`)
name, nor reaches one through a module it imported (`module._x`), its own or a library's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "omr_tus"
# Documented despite the underscore: the way a forked child exits without the parent's clean-up.
PUBLIC = {"os._exit"}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, module: str | None, level: int) -> str:
    """The absolute name an import refers to (`from ..x import y` inside omr_tus.a.b)."""
    if level == 0:
        return module or ""
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def crossings(root: Path) -> list[str]:
    """Every place in the package under `root` where a module uses another's private name."""
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    found = []
    for name, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> the module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.module, node.level)
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:  # `from . import module`
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif _private(alias.name) and source != name:
                        found.append(
                            f"{path.relative_to(root.parent)}:{node.lineno}: from {source} import {alias.name}"
                        )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    # `import a.b` binds a; `import a.b as c` binds c to a.b
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
                and f"{aliases[node.value.id]}.{node.attr}" not in PUBLIC
            ):
                found.append(
                    f"{path.relative_to(root.parent)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}"
                )
    return found


def test_no_module_uses_another_modules_private_names():
    assert crossings(PACKAGE) == []


def test_the_scan_finds_both_kinds_of_crossing(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "inner.py").write_text("def _hidden(): pass\n_CACHE = {}\n")
    (package / "outer.py").write_text(
        "from .sub.inner import _hidden\nfrom .sub import inner\nimport argparse\n\n"
        "def f(sub: argparse._SubParsersAction):\n    return inner._CACHE\n"
    )
    (package / "sub" / "same.py").write_text("def _own(): pass\n\ndef g():\n    return _own()\n")
    assert sorted(crossings(package)) == [
        "pkg/outer.py:1: from pkg.sub.inner import _hidden",
        "pkg/outer.py:5: argparse._SubParsersAction",
        "pkg/outer.py:6: pkg.sub.inner._CACHE",
    ]
