"""Each stage of dvc.yaml depends on exactly the code it runs: every project module its command imports
(transitively, read from the source) lies under one of its deps, and every code dep holds some of it.

The first half keeps a stage from missing a change (a stale output); the second keeps it from re-running
for code it never runs (editing transcript.py must not re-run extract@caption).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from pipeline.features.code_links import feature_module
from tests.imports import ROOT, closure, runs_nothing

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CODE_ROOTS = ("core", "judges", "pipeline", "model", "stage_code")


def _subst(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def _files_under(dep: str) -> set[Path]:
    path = ROOT / dep
    if path.is_file():
        return {path.resolve()}
    # a folder: DVC hashes the files its links point to, and ignores bytecode (.dvcignore)
    return {p.resolve() for p in path.rglob("*.py") if "__pycache__" not in p.parts} if path.is_dir() else set()


def _reads(module: str) -> list[str]:
    from pipeline.features.code_links import _module_imports, module_file

    return list(_module_imports(module_file(module), module)[1])


def _instances():
    """(stage instance name, code deps, modules it runs) for every stage instance of dvc.yaml."""
    profile = PARAMS["weights"]["profile"]
    out = []
    for stage, body in DVC["stages"].items():
        if "foreach" in body and isinstance(body["foreach"], dict):  # train: one instance per listed stage
            module = body["do"]["cmd"].split("-m ", 1)[1].split()[0]
            for key, item in body["foreach"].items():
                values = {"key": key, "weights.profile": profile, **{f"item.{k}": v for k, v in item.items()}}
                out.append((f"{stage}@{key}", [_subst(d, values) for d in body["do"]["deps"]], [module]))
        elif "foreach" in body:  # ingest: one instance per dataset
            for key, item in PARAMS["datasets"].items():
                values = {"key": key, "item.raw_dir": item["raw_dir"], "item.adapter": item["adapter"]}
                deps = [_subst(d, values) for d in body["do"]["deps"]]
                modules = ["pipeline.ingest", f"pipeline.datasets.{item['adapter']}"]
                out.append((f"{stage}@{key}", deps, modules))
        elif "matrix" in body:  # extract: one per feature and dataset
            for feature in PARAMS["features"]:
                for dataset in PARAMS["datasets"]:
                    values = {"item.feature": feature, "item.dataset": dataset, "weights.profile": profile}
                    deps = [_subst(d, values) for d in body["deps"]]
                    todo, runs = [feature], []
                    while todo:  # the feature and the features it may read (READS)
                        f = todo.pop()
                        module = feature_module(f, PARAMS["features"].get(f))
                        if module not in runs:
                            runs.append(module)
                            todo.extend(_reads(module))
                    out.append((f"{stage}@{feature}-{dataset}", deps, ["pipeline.extract", *runs]))
        else:
            module = body["cmd"].split("-m ", 1)[1].split()[0]
            if (ROOT / module.replace(".", "/") / "__main__.py").is_file():
                module += ".__main__"  # `python -m package` runs package/__main__.py
            deps = [_subst(d, {"weights.profile": profile}) for d in body["deps"]]
            extra = [f"pipeline.features.{f}" for f in PARAMS["features"]] if stage == "weights" else []
            out.append((stage, deps, [module, *extra]))
    return out


INSTANCES = _instances()


@pytest.mark.parametrize("name,deps,modules", INSTANCES, ids=[i[0] for i in INSTANCES])
def test_stage_depends_on_exactly_the_code_it_runs(name, deps, modules):
    runs = {p.resolve() for p in closure(modules).values() if not runs_nothing(p)}
    # data files a module loads (pipeline/canonical_face.npy) are deps too, but not code
    code_deps = [d for d in deps if d.split("/")[0] in CODE_ROOTS and ((ROOT / d).is_dir() or d.endswith(".py"))]
    covered = set().union(*(_files_under(d) for d in code_deps)) if code_deps else set()
    missing = sorted(os.path.relpath(p, ROOT) for p in runs - covered)
    assert not missing, f"{name} runs code none of its dvc.yaml deps covers: {missing}"
    unused = [d for d in code_deps if not (_files_under(d) & runs)]
    assert not unused, f"{name} depends on code it never runs: {unused}"
    # a stage's own code folder links nothing more than it runs (a folder dep above may hold more)
    extra = sorted(os.path.relpath(p, ROOT) for d in code_deps if d.startswith("stage_code/") for p in _files_under(d) - runs)
    assert not extra, f"{name}: its stage_code folder links code it never runs: {extra}"


def test_every_stage_lists_its_code_folder():
    for name, deps, _ in INSTANCES:
        assert f"stage_code/{name.split('@')[0]}" in deps, f"dvc.yaml: {name} does not list stage_code/{name.split('@')[0]}"


def test_extract_caption_does_not_depend_on_the_transcript_code():
    caption = next(deps for name, deps, _ in INSTANCES if name.startswith("extract@caption-"))
    files = set().union(*(_files_under(d) for d in caption))
    assert (ROOT / "pipeline/features/transcript.py").resolve() not in files
    emotion_text = next(deps for name, deps, _ in INSTANCES if name.startswith("extract@emotion_text-"))
    files = set().union(*(_files_under(d) for d in emotion_text))
    assert {(ROOT / f"pipeline/features/{m}.py").resolve() for m in ("transcript", "vocals", "emotion_text")} <= files
