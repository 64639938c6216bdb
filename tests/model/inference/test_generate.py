"""``python -m model.generate``'s failures: each one line naming the file and the fix, exit status 2. (The
whole command runs in tests/test_dvc_repro.py, on the model the demo trains.)"""

from __future__ import annotations

import pytest

from model.generate import PrepareFailed, main, prepare


def test_unreadable_image_is_refused_by_the_preparation(tmp_path):
    image, audio = tmp_path / "face.png", tmp_path / "drive.wav"
    image.write_bytes(b"not an image")
    audio.write_bytes(b"RIFF")
    with pytest.raises(PrepareFailed, match="face.png"):
        prepare(image, audio, tmp_path / "out", None, None, 0)


def test_missing_checkpoints_exit_2(tmp_path, caplog):
    image, audio = tmp_path / "face.png", tmp_path / "drive.wav"
    image.write_bytes(b"x")
    audio.write_bytes(b"x")
    code = main(["--image", str(image), "--audio", str(audio), "--out", str(tmp_path / "o.mp4"),
                 "--checkpoints", str(tmp_path / "none"), "-q"])
    assert code == 2 and "dvc repro train@stage2" in caplog.text


def test_missing_input_file_exit_2(tmp_path, caplog):
    assert main(["--image", str(tmp_path / "nope.png"), "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "o.mp4"), "-q"]) == 2
    assert "nope.png" in caplog.text
