"""The MEAD adapter: layout variants, metadata, option filtering and validation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline import datasets
from pipeline.datasets import DatasetError, mead
from core.params import ParamsError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "MEAD"
    touch(
        root,
        "M003/video/front/angry/level_1/001.mp4",
        "M003/video/front/angry/level_1/002.mp4",
        "M003/video/front/angry/level_3/001.mp4",
        "M003/video/front/neutral/level_1/040.mp4",
        "M003/video/left_30/angry/level_1/001.mp4",
        "M003/video/top/happy/level_2/005.mp4",
        "M003/audio/angry/level_1/001.m4a",
        "M003/audio/neutral/level_1/040.m4a",
        "W009/video/front/sad/level_2/010.mp4",
        "W009/audio/sad/level_2/010.m4a",
    )
    return root


def test_default_is_front_view_with_parsed_metadata(raw: Path) -> None:
    sources = mead.list_sources(raw, mead.Options())
    assert [s.rel for s in sources] == [
        "M003/video/front/angry/level_1/001.mp4",
        "M003/video/front/angry/level_1/002.mp4",
        "M003/video/front/angry/level_3/001.mp4",
        "M003/video/front/neutral/level_1/040.mp4",
        "W009/video/front/sad/level_2/010.mp4",
    ]
    meta = {s.rel: s.meta for s in sources}
    assert meta["M003/video/front/angry/level_1/001.mp4"] == {
        "speaker": "M003",
        "view": "front",
        "emotion": "angry",
        "level": 1,
        "utterance": 1,
        "audio": "M003/audio/angry/level_1/001.m4a",
    }
    assert "audio" not in meta["M003/video/front/angry/level_1/002.mp4"]  # no matching audio file
    assert meta["W009/video/front/sad/level_2/010.mp4"]["utterance"] == 10
    assert (raw / meta["W009/video/front/sad/level_2/010.mp4"]["audio"]).is_file()
    assert mead.list_sources(raw, mead.Options()) == sources  # deterministic


def test_option_filters(raw: Path) -> None:
    rels = lambda o: [s.rel for s in mead.list_sources(raw, o)]  # noqa: E731
    assert rels(mead.Options(views=("left_30", "top"))) == [
        "M003/video/left_30/angry/level_1/001.mp4",
        "M003/video/top/happy/level_2/005.mp4",
    ]
    assert rels(mead.Options(emotions=("neutral", "sad"))) == [
        "M003/video/front/neutral/level_1/040.mp4",
        "W009/video/front/sad/level_2/010.mp4",
    ]
    assert rels(mead.Options(levels=(3,))) == ["M003/video/front/angry/level_3/001.mp4"]
    assert rels(mead.Options(views=mead.VIEWS, emotions=("angry",), levels=(1,))) == [
        "M003/video/front/angry/level_1/001.mp4",
        "M003/video/front/angry/level_1/002.mp4",
        "M003/video/left_30/angry/level_1/001.mp4",
    ]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"views": ("side",)}, r"mead option views: got 'side'; allowed: front, down, left_30"),
        ({"views": ()}, r"mead option views: got an empty list"),
        ({"emotions": ("joy",)}, r"mead option emotions: got 'joy'; allowed: angry, contempt"),
        ({"levels": (1, 4)}, r"mead option levels: got 4; allowed: 1, 2, 3"),
    ],
)
def test_bad_options_are_clear_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        mead.Options(**kwargs)


def test_layout_variants(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "MEAD/M005/video/front/fear/level_2/003.mp4",  # speaker folders one level down
        "M007/front/happy/level_1/001.mp4",  # no video/ level
        "M009/video/video/front/sad/level_1/002.mp4",  # tarball extracted into video/
        "W011_video/video/front/contempt/level_3/004.mp4",  # folder named after the tarball
        "W011_audio/audio/contempt/level_3/004.m4a",
        "MEAD/M005/audio/fear/level_2/003.wav",
    )
    meta = {s.rel: s.meta for s in mead.list_sources(tmp_path, mead.Options())}
    assert {rel: m["speaker"] for rel, m in meta.items()} == {
        "MEAD/M005/video/front/fear/level_2/003.mp4": "M005",
        "M007/front/happy/level_1/001.mp4": "M007",
        "M009/video/video/front/sad/level_1/002.mp4": "M009",
        "W011_video/video/front/contempt/level_3/004.mp4": "W011",
    }
    assert meta["MEAD/M005/video/front/fear/level_2/003.mp4"]["audio"] == "MEAD/M005/audio/fear/level_2/003.wav"
    assert meta["W011_video/video/front/contempt/level_3/004.mp4"]["audio"] == "W011_audio/audio/contempt/level_3/004.m4a"
    assert meta["W011_video/video/front/contempt/level_3/004.mp4"]["level"] == 3


def test_odd_paths_are_skipped_with_a_warning(raw: Path, caplog: pytest.LogCaptureFixture) -> None:
    odd = [
        "M003/video/side/angry/level_1/001.mp4",
        "M003/video/front/joy/level_1/001.mp4",
        "M003/video/front/angry/intense/001.mp4",
        "M003/video/front/angry/level_1/take.mp4",
        "video/front/angry/level_1/001.mp4",
        "stray.mp4",
    ]
    touch(raw, *odd)
    with caplog.at_level(logging.WARNING, logger="pipeline.datasets.mead"):
        sources = mead.list_sources(raw, mead.Options(views=mead.VIEWS))
    assert len(sources) == 7
    assert not set(odd) & {s.rel for s in sources}
    for rel in odd:
        assert rel in caplog.text


def test_end_to_end_through_params(raw: Path) -> None:
    entry = {"adapter": "mead", "raw_dir": str(raw), "test_only": True, "views": ["front"], "emotions": ["angry"], "levels": [1]}
    sources = datasets.list_sources("mead", entry)
    assert [s.rel for s in sources] == ["M003/video/front/angry/level_1/001.mp4", "M003/video/front/angry/level_1/002.mp4"]
    common, options = datasets.parse("mead", entry)
    assert common.test_only is True
    assert options == mead.Options(views=("front",), emotions=("angry",), levels=(1,))
    with pytest.raises(ParamsError, match="emotion"):
        datasets.list_sources("mead", {"adapter": "mead", "raw_dir": str(raw), "emotion": ["angry"]})
    with pytest.raises(ParamsError, match=r"datasets\.mead\.levels"):
        datasets.list_sources("mead", {"adapter": "mead", "raw_dir": str(raw), "levels": ["1"]})
    with pytest.raises(ParamsError, match=r"datasets.mead: mead option views"):
        datasets.list_sources("mead", {"adapter": "mead", "raw_dir": str(raw), "views": ["Front"]})
