"""The A2M loader mode, the tensor-only collate and the resumable batch stream."""

from __future__ import annotations

import torch

from model.data import DataParams
from model.training.data import Batches, MotionWindows, collate

from .conftest import DATA


def _params(**kw):
    return DataParams(**{**DATA, **kw})


def test_a2m_samples_decode_only_motion_frames_reference_and_their_audio_rows(project):
    ds = MotionWindows(_params(), 0.0, shard_root=project / "shards", rank=0, world_size=1)
    sample = next(iter(ds))
    assert sample["motion_frames"].shape == (2, 3, 32, 32) and sample["reference"].shape == (3, 32, 32)
    assert "frames" not in sample and "target" not in sample and "audio" not in sample
    m = sample["motion_index"]
    assert m.tolist() == list(range(int(m[0]), int(m[0]) + 2))
    # the toy audio_embed rows are sin(frame * (layer + 1) / 7 + arange(8)): rows of the motion frames themselves
    for row, frame in zip(sample["audio_embed"], m.tolist()):
        expect = torch.sin(torch.tensor(frame * 1 / 7.0) + torch.arange(8.0))
        torch.testing.assert_close(row[0], expect.half().float(), atol=1e-3, rtol=0)
    # grey level of toy frame i is 8 + 3 i: the motion frames are the indexed frames
    level = (sample["motion_frames"].mean((1, 2, 3)) + 1) * 127.5
    torch.testing.assert_close(level, 8 + 3 * m.float(), atol=2.0, rtol=0)


def test_the_first_clip_case_repeats_frame_zero_and_its_audio(project):
    ds = MotionWindows(_params(), 1.0, shard_root=project / "shards", rank=0, world_size=1)
    for sample, _ in zip(ds, range(3)):
        assert sample["first_clip"] and sample["motion_index"].tolist() == [0, 0]
        assert torch.equal(sample["audio_embed"][0], sample["audio_embed"][1])


def test_collate_leaves_out_strings():
    batch = collate([{"key": "a", "x": torch.zeros(2), "n": 1}, {"key": "b", "x": torch.ones(2), "n": 2}])
    assert set(batch) == {"x", "n"} and batch["x"].shape == (2, 2)


def test_a_restored_stream_continues_exactly_with_several_workers(project):
    from model.data import ClipWindows

    def stream(state=None):
        ds = ClipWindows(_params(), "stage1", shard_root=project / "shards", rank=0, world_size=1)
        return Batches(ds, 1, 2, state=state)

    a = stream()
    ia = iter(a)
    head = [next(ia) for _ in range(3)]
    state = a.state_dict()
    assert state["next_worker"] == 1
    resumed = iter(stream(state))
    rest = [next(resumed) for _ in range(7)]  # past the epoch's end (6 clips, the workers' shares unequal)
    whole = [b for b, _ in zip(iter(stream()), range(10))]
    assert len({int(b["worker"][0]) for b in whole}) == 2
    for x, y in zip(head + rest, whole):
        assert torch.equal(x["frame_index"], y["frame_index"]) and torch.equal(x["worker"], y["worker"])
        assert torch.equal(x["target"], y["target"])
