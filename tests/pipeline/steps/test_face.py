"""The face steps: pose, face count, crop, and the drops, on rendered faces and real clips (pure geometry: test_face_geometry.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.cache import Cache
from core.media import clip_frames, ffprobe, picked_frames
from pipeline.demo_data.face_rig import Look
from pipeline.demo_data.render import Renderer, render_talking_clip
from pipeline.face_geometry import canonical_face, head_pose
from pipeline.steps.audio import DecodeAudio
from pipeline.steps.encode import Encode, EncodeParams
from pipeline.steps.face import Face, FaceParams
from pipeline.steps.face_filter import FaceFilter
from pipeline.steps.probe import Probe
from pipeline.steps.segment import Segment
from tests.pipeline.helpers import run_steps, source

FACE = [Probe(), DecodeAudio(), Segment(), Face(), FaceFilter()]


@pytest.fixture(scope="module")
def canonical():
    return canonical_face()


def test_pose_of_rendered_faces(canonical):
    """Whole chain (MediaPipe face mesh + estimator) on the sample's face rendered at known yaw.

    Tolerance: |error| <= 3 + 0.3 * |yaw| degrees, the sign right and the order kept. MediaPipe's
    landmarks follow about 0.75-0.8 of a mesh-warped photo's turn (measured 11/24/35/46 for 15/30/45/60).
    """
    import mediapipe as mp

    size = 256
    rig = Renderer().rig(size, Look())
    got = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        for yaw in (0, 15, 30, 45, 60, -30):
            res = fm.process(rig.render(0.0, 0.0, float(yaw)))
            assert res.multi_face_landmarks, f"no face at yaw {yaw}"
            lm = np.array([(q.x * size, q.y * size, q.z * size) for q in res.multi_face_landmarks[0].landmark])
            est = head_pose(lm, canonical, (size, size))[0]
            assert abs(est - yaw) <= 3 + 0.3 * abs(yaw), (yaw, est)
            got.append(est)
    assert got[:5] == sorted(got[:5]) and got[5] < -15


@pytest.mark.parametrize("seek", [0.0, 0.7])
def test_picked_frames_are_the_full_decodes_frames_at_those_indices(media, seek):
    """The face step's decode keeps only the frames detection and the mesh read: the same pixels and order."""
    path = media("p.mp4", seconds=2.0, fps="30", size="64x48")
    n, every = 30, (5, 2)
    full = [f.copy() for f in clip_frames(path, seek, 25, n, (32, 24))]
    picked = [f.copy() for f in clip_frames(path, seek, 25, n, (32, 24), every=every)]
    assert picked_frames(n, every) == [i for i in range(n) if i % 5 == 0 or i % 2 == 0] and len(picked) == 18
    assert all(np.array_equal(full[i], f) for i, f in zip(picked_frames(n, every), picked))
    assert not np.array_equal(picked[1], picked[2])  # frames 2 and 4: distinct pictures, no duplicates filling gaps


# -- the sample's generated faces ----------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Small versions of the sample dataset's frontal, two-face and head-turn clips."""
    raw = tmp_path_factory.mktemp("rendered")
    specs = {"frontal.mp4": {}, "two_faces.mp4": {"faces": 2}, "head_turn_60.mp4": {"yaw_deg": 60.0, "speaker": "spk_b"},
             # one face; the short-range detector also finds a face-like badge on the suit (score ~0.6) in every frame
             "badge.mp4": {"speaker": "spk_b", "seed": 4, "size": 384}}
    renderer = Renderer()
    for i, (name, kw) in enumerate(specs.items()):
        render_talking_clip(raw / name, 3.2, 25, sample_rate=16000, channels=1, renderer=renderer, **{"seed": i, "size": 192, **kw})
    cache = Cache(raw / "cache")
    clips, drops = run_steps([source(raw / n, cache) for n in specs], FACE, cache)
    return clips, drops


def test_sample_two_faces_and_head_turn_are_dropped(rendered):
    clips, drops = rendered
    reasons = {d.message.split(":")[0]: d.reason for _, d in drops}
    assert reasons == {"two_faces.mp4": "multi_face", "head_turn_60.mp4": "profile"}
    frontal, badge = sorted(clips, key=lambda c: c.source_rel != "frontal.mp4")
    assert badge.source_rel == "badge.mp4" and badge.scores["faces_max"] == 1 and badge.scores["multi_face_fraction"] == 0
    s = frontal.scores
    assert s["face_fraction"] == 1.0 and s["faces_max"] == 1 and s["yaw_abs_median"] < 10
    face = frontal.meta["face"]
    n = frontal.meta["segment"]["frames"]
    assert len(face["pose"]) == len(face["crop"]) == len(face["tracked"]) == n
    lm = np.load(frontal.files["landmarks.npy"])
    assert lm.dtype == np.float16 and lm.shape == (n, 478, 3)
    assert 0 < np.nanmin(lm[..., :2]) and np.nanmax(lm[..., :2]) < 512  # in crop pixels, inside the crop


def test_second_detections_need_face_mesh_confirmation(rendered, tmp_path):
    """Without confirmation the badge counts as a second face in most frames (the false ``multi_face``)."""
    clips, _ = rendered
    (badge,) = [c for c in clips if c.source_rel == "badge.mp4"]
    cache = Cache(tmp_path / "cache")
    unverified, _ = run_steps([source(Path(badge.source), cache)],
                              [Probe(), DecodeAudio(), Segment(), Face(FaceParams(verify_faces=False))], cache)
    assert unverified[0].scores["multi_face_fraction"] > 0.5


# -- real clips -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return Cache(tmp_path_factory.mktemp("real") / "cache")


@pytest.mark.real
def test_real_frontal_clips_are_kept(real_dir, real_cache):
    names = ["v01_frontal_hdtf_katiehill_25fps_a16k.mp4", "v02_frontal_theresamay_25fps_a48k.mp4", "v04_frontal_woman_30fps_a44k.mp4"]
    clips, drops = run_steps([source(real_dir / "videos" / n, real_cache) for n in names], FACE, real_cache)
    assert not drops
    assert sorted({c.source_rel for c in clips}) == names
    for c in clips:
        assert c.scores["yaw_abs_median"] < 20, (c.source_rel, c.scores)
        assert c.scores["face_fraction"] >= 0.95 and c.scores["faces_max"] == 1


@pytest.mark.real
def test_real_three_quarter_view_is_profile(real_dir, real_cache):
    clips, drops = run_steps([source(real_dir / "videos" / "v06_profile34_restaurant_noise_25fps_a48k.mp4", real_cache)], FACE, real_cache)
    assert not clips and [d.reason for _, d in drops] == ["profile"]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.mark.real
def test_real_two_speakers_side_by_side_is_multi_face(real_dir, real_cache, tmp_path):
    v = real_dir / "videos"
    out = tmp_path / "two.mp4"
    _ffmpeg("-t", "3.4", "-i", str(v / "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"), "-t", "3.4", "-i", str(v / "v02_frontal_theresamay_25fps_a48k.mp4"),
            "-filter_complex", "[0:v]scale=256:256[a];[1:v]scale=256:256[b];[a][b]hstack", "-map", "1:a", "-c:v", "libx264",
            "-preset", "ultrafast", "-threads", "1", "-c:a", "aac", str(out))
    clips, drops = run_steps([source(out, real_cache)], FACE, real_cache)
    assert not clips and [d.reason for _, d in drops] == ["multi_face"]


@pytest.mark.real
def test_real_covered_face_is_no_face(real_dir, real_cache, tmp_path):
    out = tmp_path / "covered.mp4"
    _ffmpeg("-t", "3.4", "-i", str(real_dir / "videos" / "v02_frontal_theresamay_25fps_a48k.mp4"),
            "-vf", "scale=256:256,drawbox=x=40:y=20:w=180:h=230:color=gray:t=fill", "-c:v", "libx264", "-preset", "ultrafast",
            "-threads", "1", "-c:a", "aac", str(out))
    clips, drops = run_steps([source(out, real_cache)], FACE, real_cache)
    assert not clips and [d.reason for _, d in drops] == ["no_face"]


@pytest.mark.real
def test_real_v05_small_face_in_tall_hevc_gives_a_512_crop(real_dir, real_cache, tmp_path):
    cut = tmp_path / "v05_4s.mp4"  # the first 4 s, stream-copied: still 1080x1920 HEVC
    _ffmpeg("-i", str(real_dir / "videos" / "v05_hevc_portrait1080x1920_30fps_a44k.mp4"), "-t", "4", "-c", "copy", str(cut))
    (clip,), drops = run_steps([source(cut, real_cache)], [*FACE, Encode(EncodeParams(preset="ultrafast"))], real_cache)
    assert not drops
    v = ffprobe(clip.files["mp4"])["streams"][0]
    assert (v["width"], v["height"], v["codec_name"]) == (512, 512, "h264")
    assert int(v["nb_frames"]) == clip.meta["encode"]["frames"] == clip.meta["segment"]["frames"]
    assert clip.meta["face"]["source_size"] == [1080, 1920]
    cx, cy, side = np.median(np.array(clip.meta["face"]["crop"]), axis=0)
    assert 300 < side < 1080 and 0 < cx < 1080 and 0 < cy < 1920  # a face-sized box inside the tall frame
    lm = np.load(clip.files["landmarks.npy"]).astype(np.float32)
    nose = np.nanmedian(lm[:, 1, :2], axis=0)
    assert np.all(np.abs(nose - 256) < 80)  # the face sits in the middle of the crop
