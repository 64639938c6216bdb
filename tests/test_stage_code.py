"""stage_code/<stage>/ links exactly the code each stage's command runs (core/stage_code.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from core import stage_code


def test_the_committed_folders_match_the_code_each_stage_runs():
    assert stage_code.check() == []


def test_folders_are_relative_links_to_project_modules():
    for folder in stage_code.stage_folders(stage_code._read_dvc(stage_code.ROOT)):
        for link in (stage_code.ROOT / folder).iterdir():
            target = os.readlink(link)
            assert not os.path.isabs(target), f"{link}: absolute link {target} (a clone elsewhere would break it)"
            assert link.resolve().is_relative_to(stage_code.ROOT) and link.resolve().suffix == ".py"


def test_closure_follows_function_level_imports_and_parent_packages_but_not_type_checking(tmp_path):
    pkg = tmp_path / "core"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Doc only."""\n')
    (pkg / "sub" / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import c\n"
                                      "def f():\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("Y = 2\n")
    (pkg / "c.py").write_text("Z = 3\n")
    (pkg / "__main__.py").write_text("from core.sub import a\n")
    got = stage_code.closure(["core.sub.a"], tmp_path)
    assert set(got) == {"core", "core.sub", "core.sub.a", "core.sub.b"}  # c only under TYPE_CHECKING
    links = stage_code.links("core.sub.a", tmp_path)
    assert set(links) == {"core__sub.py", "core__sub__a.py", "core__sub__b.py"}  # core/__init__ runs nothing
    assert stage_code.command_module("python -m core --x 1", tmp_path) == "core.__main__"
    with pytest.raises(ValueError, match="python -m"):
        stage_code.command_module("bash run.sh", tmp_path)


def test_check_names_a_stale_folder_and_write_fixes_it(tmp_path):
    for name in ("core", "pipeline", "model", "judges"):
        shutil.copytree(stage_code.ROOT / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "dvc.yaml").write_text("stages:\n  select:\n    cmd: python -m pipeline.select\n"
                                       "    deps:\n      - stage_code/select\n")
    stage_code.write(tmp_path)
    assert stage_code.check(tmp_path) == []
    folder = tmp_path / "stage_code/select"
    os.remove(next(folder.glob("pipeline__select.py")))
    (folder / "notes.txt").write_text("x")
    (tmp_path / "stage_code/old").mkdir()
    problems = stage_code.check(tmp_path)
    assert any("stage_code/select" in p and "pipeline__select.py" in p and "notes.txt" in p for p in problems)
    assert any("stage_code/old" in p and "no stage" in p for p in problems)
    stage_code.write(tmp_path)
    assert stage_code.check(tmp_path) == [] and not (tmp_path / "stage_code/old").exists()
    assert (tmp_path / "stage_code/select/pipeline__select.py").resolve() == (tmp_path / "pipeline/select.py").resolve()


def test_a_stage_listing_another_stages_folder_is_an_error(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    cmd: python -m core.cli\n    deps:\n      - stage_code/b\n")
    with pytest.raises(ValueError, match="stage_code/a"):
        stage_code.check(tmp_path)
