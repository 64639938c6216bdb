"""pipeline/features/code/<feature>/ links exactly the code each feature's extract stage runs."""

from __future__ import annotations

import os

from core import params
from pipeline.features import code_links


def test_the_committed_links_match_the_code_each_feature_runs():
    assert code_links.check(params.read_yaml(code_links.ROOT / "params.yaml")["features"]) == []


def test_closure_follows_imports_and_reads():
    features = params.read_yaml(code_links.ROOT / "params.yaml")["features"]
    caption = code_links.closure("caption", features)
    assert "pipeline__features__caption_backends.py" in caption and "judges__clip_text.py" in caption
    assert not any("transcript" in name or "vocals" in name for name in caption)
    emotion_text = code_links.closure("emotion_text", features)
    assert {"pipeline__features__transcript.py", "pipeline__features__vocals.py", "judges__text_emotion.py"} <= set(emotion_text)
    assert "core__params.py" not in emotion_text  # the shared machinery is dvc.yaml's own list


def test_check_names_a_missing_or_stale_folder(tmp_path):
    features = {"caption": None, "caption_copy": {"module": "pipeline.features.caption"}}
    problems = code_links.check(features)
    assert len(problems) == 1 and "code/caption_copy" in problems[0]
    folder = tmp_path / "pipeline/features/code/vocals"
    folder.mkdir(parents=True)
    os.symlink(code_links.ROOT / "pipeline/features/vocals.py", folder / "pipeline__features__vocals.py")
    (folder / "notes.txt").write_text("x")
    assert code_links._links(folder) == {"pipeline__features__vocals.py": (code_links.ROOT / "pipeline/features/vocals.py").resolve()}
