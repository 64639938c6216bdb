"""``pipeline/features/code/<feature>/``: links to exactly the code a feature's extract stage runs.

DVC cannot give the instances of one ``matrix`` stage different dependency lists, only paths with
``${item.feature}`` in them. So each ``extract@<feature>-<dataset>`` depends on the folder
``pipeline/features/code/<feature>/``, whose files are symbolic links (DVC hashes what they point
to) to the feature's own module, the ``pipeline.features`` helpers, ``judges`` and ``core`` modules it
imports (followed transitively; the extract machinery is ``stage_code/extract``, see :mod:`core.stage_code`), and the same for every feature it may read (its module's ``READS``: a
feature that reads the vocals track runs the vocals extractor through the per-clip cache). Editing
``transcript.py`` thus re-runs the transcript and emotion_text stages and leaves ``extract@caption``
alone. The generic machinery every instance shares (extract, the runner, core) is the stage's
``stage_code/extract`` folder.

    python -m pipeline.features.code_links          # rewrite the links of every feature in params.yaml
    python -m pipeline.features.code_links --check  # exit 1 and say what differs (the test suite runs this)

Imports are read from the source (ast), never executed, so this runs without the models' packages.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from core import params as params_mod
from core import stage_code

ROOT = Path(__file__).resolve().parents[2]
CODE_DIR = Path("pipeline/features/code")
#: packages whose modules a feature's code closure follows
FOLLOWED = ("pipeline.features", "judges", "core")
#: the machinery every extract instance runs, in stage_code/extract (not followed from here)
SHARED = {"pipeline.features", "core.params", "core.cli", "core.weights", "core.shards", "core.members", "core.clip", "core.hashing", "core.storage"}


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a module of the work tree (None for a name that is not a module file)."""
    parts = name.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _module_imports(path: Path, name: str) -> tuple[set[str], tuple[str, ...]]:
    """Project modules ``path`` imports when it runs (followed packages only) and its module-level ``READS``."""
    reads: tuple[str, ...] = ()
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "READS" for t in targets) and node.value is not None:
                reads = tuple(ast.literal_eval(node.value))
    found = stage_code.module_imports(path, name)
    followed = {m for m in found if any(m == p or m.startswith(p + ".") for p in FOLLOWED)}
    return followed, reads


def feature_module(feature: str, entry: dict | None) -> str:
    """The module of a feature: ``features.<feature>.module`` or ``pipeline.features.<feature>``."""
    name = (entry or {}).get("module") or feature
    return name if "." in name else f"pipeline.features.{name}"


def closure(feature: str, features: dict[str, dict | None], root: Path = ROOT) -> dict[str, Path]:
    """``{file name in the links folder: source file}`` of everything ``feature``'s stage runs."""
    files: dict[str, Path] = {}
    todo, seen_features, seen_modules = [feature], set(), set()
    while todo:
        current = todo.pop()
        if current in seen_features:
            continue
        seen_features.add(current)
        modules = [feature_module(current, features.get(current))]
        while modules:
            name = modules.pop()
            if name in seen_modules or name in SHARED:
                continue
            seen_modules.add(name)
            path = module_file(name, root)
            if path is None:
                continue  # `from pkg import name` where name is not a module
            link = name.replace(".", "__") + ".py"
            files[link] = path
            imported, reads = _module_imports(path, name)
            modules.extend(sorted(imported))
            if name == feature_module(current, features.get(current)):
                todo.extend(reads)
    return dict(sorted(files.items()))


def _links(folder: Path) -> dict[str, Path]:
    return stage_code.read_links(folder)


def check(features: dict[str, dict | None], root: Path = ROOT) -> list[str]:
    """What differs between the links on disk and the code each feature runs (empty: all true)."""
    problems = []
    code = root / CODE_DIR
    for feature in sorted(features):
        want = {k: v.resolve() for k, v in closure(feature, features, root).items()}
        have = _links(code / feature)
        extra = [p.name for p in (code / feature).iterdir() if not p.is_symlink()] if (code / feature).is_dir() else []
        if want != have or extra:
            problems.append(f"{CODE_DIR / feature}: links {sorted(have)} but the feature runs {sorted(want)}"
                            + (f"; not links: {extra}" if extra else ""))
    return problems


def write(features: dict[str, dict | None], root: Path = ROOT) -> None:
    """Rewrite ``pipeline/features/code/<feature>/`` for every feature (relative links)."""
    for feature in sorted(features):
        stage_code.write_links(root / CODE_DIR / feature, closure(feature, features, root))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.features.code_links", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=None, help="params file (default: params.yaml)")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a link folder is out of date")
    args = ap.parse_args(argv)
    features = params_mod.read_yaml(args.params).get("features") or {}
    if args.check:
        problems = check(features)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("fix: python -m pipeline.features.code_links", file=sys.stderr)
        return 1 if problems else 0
    write(features)
    print(f"wrote {CODE_DIR}/<feature>/ for {len(features)} feature(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
