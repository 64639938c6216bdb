"""``stage_code/<stage>/``: one DVC dependency per stage for the code its command runs.

Each stage of ``dvc.yaml`` that lists ``stage_code/<stage>`` depends on that folder, whose files are
symbolic links (DVC hashes what they point to) to exactly the project modules the stage's command
(``python -m <module>``) imports, transitively: read from the source with ``ast``, never executed;
function-level imports included, ``if TYPE_CHECKING:`` blocks left out (annotations only), parent packages
included (importing ``a.b`` runs ``a/__init__.py``), modules whose body is only a docstring left out (importing
them runs nothing). Editing one module thus re-runs exactly the stages that import it, as when every module
was listed in ``dvc.yaml`` one by one; but one folder per stage is one entry for DVC to load, lock and check
instead of 13-49 (``dvc.lock``: 622 dep and output entries became 173; a no-op ``dvc repro`` of the 23 stages
takes 0.84x the time, bench/README.md).

What a command imports by name at run time (a dataset's adapter, the feature modules, the judges the
weights stage builds) is not in the closure: ``dvc.yaml`` lists those paths itself
(``pipeline/datasets/${item.adapter}.py``, ``pipeline/features/code/${item.feature}``, ...).

    python -m core.stage_code          # rewrite the folders of every stage that lists one
    python -m core.stage_code --check  # exit 1 and say what differs (the test suite runs this)
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE_DIR = Path("stage_code")
#: the project's packages (imports of anything else are not followed)
PACKAGES = ("core", "judges", "pipeline", "model")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of the project modules ``path`` imports (relative imports resolved)."""
    return module_imports(path, module_name(path, root))


def module_imports(path: Path, name: str) -> set[str]:
    """Absolute names of the project modules the file ``path`` of module ``name`` imports when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {n for n in out if n.split(".")[0] in PACKAGES}


def runs_nothing(path: Path) -> bool:
    """A module whose body is only its docstring (and ``from __future__``): importing it runs no code."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) or
               isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in body)


def sources(root: Path = ROOT) -> dict[str, Path]:
    """``{module name: file}`` of every module of the project's packages."""
    files = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts and not path.is_symlink():
                files[module_name(path, root)] = path
    return files


def closure(modules: list[str], root: Path = ROOT, files: dict[str, Path] | None = None) -> dict[str, Path]:
    """Every project module the given modules import, transitively (themselves and their packages included)."""
    files = sources(root) if files is None else files
    out: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        while name and name not in files:
            name = name.rpartition(".")[0]  # `from pkg import name` where name is not a module
        if not name or name in out:
            continue
        out[name] = files[name]
        todo.extend(imports(files[name], root))
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)  # importing a.b runs a/__init__.py first
    return out


def command_module(cmd: str, root: Path = ROOT) -> str:
    """The module ``python -m <module> ...`` runs (``<module>.__main__`` for a package)."""
    words = cmd.split()
    if "-m" not in words or words.index("-m") + 1 >= len(words):
        raise ValueError(f"dvc.yaml: stage command {cmd!r} is not `python -m <module> ...`")
    module = words[words.index("-m") + 1]
    if (root / module.replace(".", "/") / "__main__.py").is_file():
        module += ".__main__"
    return module


def stage_folders(dvc: dict) -> dict[str, str]:
    """``{stage_code folder: the module its stage runs}`` for every stage of ``dvc.yaml`` that lists one."""
    out: dict[str, str] = {}
    for stage, body in (dvc.get("stages") or {}).items():
        definition = body.get("do", body)
        for dep in definition.get("deps") or []:
            if str(dep).startswith(f"{CODE_DIR}/"):
                if dep != f"{CODE_DIR}/{stage}":
                    raise ValueError(f"dvc.yaml: stage {stage!r} lists {dep!r}; its code folder is {CODE_DIR}/{stage}")
                out[dep] = command_module(definition["cmd"])
    return out


def links(module: str, root: Path = ROOT, files: dict[str, Path] | None = None) -> dict[str, Path]:
    """``{link name: source file}`` for the code ``python -m <module>`` runs."""
    found = closure([module], root, files)
    return {name.replace(".", "__") + ".py": path for name, path in sorted(found.items()) if not runs_nothing(path)}


def read_links(folder: Path) -> dict[str, Path]:
    """``{link name: resolved target}`` of the symbolic links in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    return {p.name: (folder / os.readlink(p)).resolve() for p in folder.iterdir() if p.is_symlink()}


def write_links(folder: Path, links: dict[str, Path]) -> None:
    """Replace ``folder`` by one holding exactly ``links`` (relative symbolic links), built beside it first."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for link, target in links.items():
        os.symlink(os.path.relpath(target, folder), tmp / link)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)


def _read_dvc(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}


def check(root: Path = ROOT) -> list[str]:
    """What differs between the link folders on disk and the code each stage runs (empty: all true)."""
    problems = []
    files = sources(root)
    folders = stage_folders(_read_dvc(root))
    for folder, module in sorted(folders.items()):
        want = {k: v.resolve() for k, v in links(module, root, files).items()}
        path = root / folder
        have = read_links(path)
        extra = sorted(p.name for p in path.iterdir() if not p.is_symlink()) if path.is_dir() else []
        if want != have or extra:
            missing, stale = sorted(set(want) - set(have)), sorted(set(have) - set(want))
            wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
            problems.append(f"{folder}: missing {missing}, not run {stale}, wrong target {wrong}"
                            + (f", not links {extra}" if extra else ""))
    if (root / CODE_DIR).is_dir():
        listed = {Path(f).name for f in folders}
        problems += [f"{CODE_DIR / p.name}: no stage of dvc.yaml lists it" for p in sorted((root / CODE_DIR).iterdir())
                     if p.is_dir() and p.name not in listed and not p.name.startswith(".")]
    return problems


def write(root: Path = ROOT) -> list[str]:
    """Rewrite every stage's link folder (relative links); returns the folders written."""
    files = sources(root)
    folders = stage_folders(_read_dvc(root))
    for folder, module in sorted(folders.items()):
        write_links(root / folder, links(module, root, files))
    if (root / CODE_DIR).is_dir():
        listed = {Path(f).name for f in folders}
        for p in (root / CODE_DIR).iterdir():
            if p.is_dir() and p.name not in listed:
                shutil.rmtree(p)
    return sorted(folders)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.stage_code", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a link folder is out of date")
    args = ap.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("fix: python -m core.stage_code", file=sys.stderr)
        return 1 if problems else 0
    written = write()
    print(f"wrote {len(written)} folder(s): {', '.join(written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
