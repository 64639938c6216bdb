"""Streaming == functional on the same data split in chunks, and the states of two "ranks" merged == one
process on all the data, for every metric (tiny judges, 32-64 px frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.metrics import au_f1, ccc, efid, fid, fvd, lpips, psnr, ssim, sync
from tests.model.metrics.conftest import synthetic_landmarks

REL = 1e-5  # judge outputs are float32: a different batch split moves the last bits (1e-6 relative seen)


def _video(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """Smooth moving blobs plus noise: ``(n, size, size, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    frames = []
    for t in range(n):
        img = np.stack([np.sin(6 * xx + 0.3 * t + c) * np.cos(5 * yy - 0.2 * t) for c in range(3)], -1)
        frames.append(np.clip(127.5 + 100 * img + rng.normal(0, 10, img.shape), 0, 255))
    return np.asarray(frames, dtype=np.uint8)


@pytest.fixture(scope="module")
def pair():
    return _video(12, seed=1), _video(12, seed=2)


def _two_ranks(make, update, data_a, data_b, data_all):
    """(one process on all data, rank A + rank B merged) computes."""
    whole, a, b = make(), make(), make()
    update(whole, *data_all)
    update(a, *data_a)
    update(b, *data_b)
    merged = make().merge([a.state(), b.state()])
    return whole.compute(), merged.compute()


def _close(x, y, rel=REL):
    if isinstance(x, dict):
        assert set(x) == set(y)
        for k in x:
            _close(x[k], y[k], rel)
        return
    if isinstance(x, float) and np.isnan(x):
        assert np.isnan(y)
        return
    assert y == pytest.approx(x, rel=rel, abs=1e-9)


@pytest.mark.parametrize("name", ["psnr", "ssim", "lpips"])
def test_pixel_metrics_stream_and_merge(name, pair, judge):
    p, t = pair
    mod = {"psnr": psnr, "ssim": ssim, "lpips": lpips}[name]
    cls = {"psnr": psnr.PSNR, "ssim": ssim.SSIM, "lpips": lpips.LPIPS}[name]
    args = (judge("lpips"),) if name == "lpips" else ()
    functional = float(getattr(mod, name)(p, t, *args))
    m = cls(*args)
    for s in range(0, 12, 5):
        m.update(p[s:s + 5], t[s:s + 5])
    _close(functional, m.compute())
    whole, merged = _two_ranks(lambda: cls(*args), lambda m, a, b: m.update(a, b), (p[:7], t[:7]), (p[7:], t[7:]), (p, t))
    _close(whole, merged)
    _close(functional, whole)
    m.reset()
    assert np.isnan(m.compute())


def test_fid_streams_and_merges(pair, judge):
    p, t = pair
    j = judge("inception")
    functional = fid.fid(p, t, j)
    m = fid.FID(j, batch_size=4)
    for s in range(0, 12, 5):
        m.update(p[s:s + 5], t[s:s + 5])
    _close(functional, m.compute())
    whole, merged = _two_ranks(lambda: fid.FID(j), lambda m, a, b: m.update(a, b), (p[:6], t[:6]), (p[6:], t[6:]), (p, t))
    _close(whole, merged)
    # reference statistics cached on one side (target only), generated frames added later
    ref = fid.FID(j)
    ref.update(None, t)
    late = fid.FID(j)
    late.load_state(ref.state())
    late.update(p, None)
    _close(functional, late.compute())


def test_fvd_streams_and_merges(judge):
    j = judge("i3d")
    vids_p = [_video(20, 32, seed=s) for s in (3, 4, 5)]
    vids_t = [_video(20, 32, seed=s) for s in (6, 7, 8)]
    functional = fvd.fvd(vids_p, vids_t, j, stride=4)  # windows at 0 and 4: 2 clips a video
    m = fvd.FVD(j, stride=4)
    for a, b in zip(vids_p, vids_t):
        m.update(a, b)
    assert m.count("pred") == m.count("target") == 6
    _close(functional, m.compute())
    a, b = fvd.FVD(j, stride=4), fvd.FVD(j, stride=4)
    a.update(vids_p[0], vids_t[0])
    for x, y in zip(vids_p[1:], vids_t[1:]):
        b.update(x, y)
    _close(m.compute(), fvd.FVD(j, stride=4).merge([a.state(), b.state()]).compute())
    short = fvd.FVD(j)
    short.update(_video(10, 32), _video(10, 32))  # shorter than 16 frames: no clip, no number
    assert short.count("pred") == 0 and np.isnan(short.compute())


@pytest.fixture(scope="module")
def faces():
    """Two 10-frame 64 px 'videos' with a synthetic landmark track (frame 4 without a face)."""
    lm = synthetic_landmarks(10, 64, seed=1)
    lm[4] = np.nan
    return _video(10, 64, seed=9), _video(10, 64, seed=10), lm


def test_efid_streams_and_merges(faces, judge):
    p, t, lm = faces
    j = judge("face_3d")
    functional = efid.efid(p, t, lm, j)
    whole, merged = _two_ranks(lambda: efid.EFID(j), lambda m, a, b, c: m.update(a, b, c),
                               (p[:5], t[:5], lm[:5]), (p[5:], t[5:], lm[5:]), (p, t, lm))
    _close(functional, whole)
    _close(whole, merged)
    m = efid.EFID(j)
    m.update(p, t, lm)
    assert m.count("pred") == 9  # the frame without landmarks is left out
    same = efid.EFID(j)
    same.update(t, t, lm)
    assert abs(same.compute()) < 1e-4  # ~0 up to sqrtm error on a rank-8 64-d covariance


def test_au_f1_streams_and_merges(faces, judge):
    p, t, lm = faces
    j = judge("action_units")
    functional = au_f1.au_f1(p, t, lm, j)
    whole, merged = _two_ranks(lambda: au_f1.AUF1(j), lambda m, a, b, c: m.update(a, b, c),
                               (p[:3], t[:3], lm[:3]), (p[3:], t[3:], lm[3:]), (p, t, lm))
    _close(functional, whole, rel=0)
    _close(whole, merged, rel=0)
    assert whole["frames"] == 9
    identical = au_f1.au_f1(t, t, lm, j)
    assert identical["au_f1"] == 1.0 or np.isnan(identical["au_f1"])


def test_ccc_streams_and_merges(faces, judge):
    p, t, lm = faces
    j = judge("face_va")
    functional = ccc.ccc_va(p, t, lm, j)
    whole, merged = _two_ranks(lambda: ccc.CCC(j), lambda m, a, b, c: m.update(a, b, c),
                               (p[:6], t[:6], lm[:6]), (p[6:], t[6:], lm[6:]), (p, t, lm))
    _close(functional, whole)
    _close(whole, merged)
    # the same number as the pure formula on the judge's VA of the kept frames
    keep = np.isfinite(lm).all(axis=(1, 2))
    vp, vt = ccc.valence_arousal(p[keep], lm[keep], j), ccc.valence_arousal(t[keep], lm[keep], j)
    assert whole["ccc_v"] == pytest.approx(float(ccc.ccc(vp[:, 0], vt[:, 0])), rel=1e-9)
    assert whole["ccc_a"] == pytest.approx(float(ccc.ccc(vp[:, 1], vt[:, 1])), rel=1e-9)


def test_sync_streams_and_merges(judge):
    j = judge("sync")
    rng = np.random.default_rng(11)
    vids = [_video(12, 64, seed=s) for s in (12, 13)]
    lms = [synthetic_landmarks(12, 64, seed=s) for s in (12, 13)]
    wavs = [(0.1 * rng.normal(size=12 * 640)).astype(np.float32) for _ in vids]
    whole = sync.Sync(j)
    parts = []
    for v, lm, w in zip(vids, lms, wavs):
        whole.update(v, v, landmarks=lm, audio=w)
        one = sync.Sync(j)
        one.update(v, None, landmarks=lm, audio=w)
        parts.append(one)
    per = [sync.sync_video(v, lm, w, j) for v, lm, w in zip(vids, lms, wavs)]
    out = whole.compute()
    assert out["videos"] == 2 and out["skipped"] == 0
    assert out["sync_conf"] == pytest.approx(np.mean([s["confidence"] for s in per]), rel=1e-9)
    assert out["sync_dist"] == pytest.approx(np.mean([s["min_dist"] for s in per]), rel=1e-9)
    assert out["sync_offset"] == pytest.approx(np.mean([abs(s["offset"]) for s in per]), rel=1e-9)
    assert out["sync_conf_gt"] == pytest.approx(out["sync_conf"], rel=1e-9)  # pred == gt here
    merged = sync.Sync(j).merge([p.state() for p in parts]).compute()
    for k in ("sync_conf", "sync_dist", "sync_offset", "videos"):
        assert merged[k] == pytest.approx(out[k], rel=1e-9)
    short = sync.Sync(j)
    short.update(vids[0][:5], landmarks=lms[0][:5], audio=wavs[0])  # 5 frames: no window
    assert short.compute()["skipped"] == 1


def test_states_are_sums_of_fixed_shapes_and_reject_mismatches(judge):
    a, b = fid.FID(judge("inception")), fvd.FVD(judge("i3d"))
    with pytest.raises(ValueError, match="shape"):  # 128-d tiny pool3 vs 400-d I3D
        a.merge([b.state()])
    with pytest.raises(ValueError, match="keys"):
        a.merge([psnr.PSNR().state()])
    st = psnr.PSNR().state()
    assert all(v.dtype == torch.float64 for v in st.values())
    st["total"] = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        psnr.PSNR().merge([st])


def test_all_reduce_over_a_one_rank_group(tmp_path, pair):
    import torch.distributed as dist

    p, t = pair
    m = psnr.PSNR()
    m.update(p, t)
    before = m.compute()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert m.all_reduce().compute() == pytest.approx(before)
    finally:
        dist.destroy_process_group()


def test_every_protocol_is_a_json_dict():
    from model.metrics import cli

    proto = cli.protocols(list(cli.METRICS), 512, 16)
    assert set(proto) == {"alignment", *cli.METRICS}
    text = json.dumps(proto)
    for needle in ("population", "11x11", "100", "[-1, 1]", "2048", "16", "80:144", "0.5", "median", "FRAMES"):
        assert needle in text, needle
