"""Ray stays inside ``pipeline/runner/ray_backend.py``: no other module of the project imports it,
and importing the runner (or a stage) does not load it."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROOTS = ("pipeline", "model", "core", "judges", "bench")
RAY_HOME = Path("pipeline/runner/ray_backend.py")


def _imports_ray(tree: ast.AST) -> list[int]:
    """Lines that import Ray, also inside string literals that are Python code (``python -c`` scripts)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "ray" in node.value:
            try:
                inner = ast.parse(textwrap.dedent(node.value))
            except (SyntaxError, ValueError):
                continue
            lines += [node.lineno] * bool(_imports_ray(inner))
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("import_module", "__import__") \
                and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        if any(n == "ray" or n.startswith("ray.") for n in names):
            lines.append(node.lineno)
    return lines


def test_ray_is_imported_only_in_the_ray_backend():
    files = sorted(p for root in ROOTS if (REPO / root).is_dir() for p in (REPO / root).rglob("*.py"))
    assert any(p.relative_to(REPO) == RAY_HOME for p in files)
    found = {}
    for path in files:
        lines = _imports_ray(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert set(found) == {str(RAY_HOME)}, found


def test_importing_the_runner_and_the_stages_does_not_load_ray():
    code = "import sys, pipeline.runner, pipeline.ingest, pipeline.extract; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
