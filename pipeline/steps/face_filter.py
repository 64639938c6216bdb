"""``face_filter``: apply the face thresholds to the scores the ``face`` step stored (DESIGN 3.2).

A separate, cheap step: changing a threshold re-runs only this step (its cache key holds these
params), never MediaPipe. A kept clip passes through unchanged, so the steps after it (encode)
stay cached too. Checks in order, first failing one wins:

* ``no_face``: ``face_fraction < min_face_fraction`` (face covered, cut away, or never there);
* ``multi_face``: ``multi_face_fraction > max_multi_face_fraction`` (a second face of at least
  ``steps.face.min_face_size`` in more than that fraction of the sampled frames);
* ``face_too_small``: ``face_px < min_face_px`` or ``face_size < min_face_size``;
* ``profile``: ``yaw_abs_median > max_yaw`` or ``pitch_abs_median > max_pitch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.clip import Clip, Drop
from pipeline.steps import Resources, Step

NO_FACE = "no_face"
MULTI_FACE = "multi_face"
PROFILE = "profile"
FACE_TOO_SMALL = "face_too_small"


@dataclass(frozen=True)
class FaceFilterParams:
    """``steps.face_filter``."""

    min_face_fraction: float = 0.9  # of the mesh frames
    max_multi_face_fraction: float = 0.2  # of the detection frames
    min_face_px: float = 64.0  # median face side in source pixels (a 512 crop of less is mostly upsampling)
    min_face_size: float = 0.0  # median face side / frame's shorter side (0: off)
    max_yaw: float = 25.0  # degrees, median |yaw| over the tracked frames
    max_pitch: float = 30.0  # degrees, median |pitch|


class FaceFilter(Step):
    name = "face_filter"
    version = "1"
    resources = Resources(cpus=1)  # same shape as the other ingest steps: the same worker pool serves all

    def __init__(self, params: FaceFilterParams | None = None):
        super().__init__(params or FaceFilterParams())

    def __call__(self, clip: Clip, out: Path) -> Clip | Drop:
        p, s = self.params, clip.scores
        if s["face_fraction"] < p.min_face_fraction:
            return Drop(NO_FACE, f"{clip.source_rel}: a face in {s['face_fraction']:.0%} of the frames (min {p.min_face_fraction:.0%})")
        if s["multi_face_fraction"] > p.max_multi_face_fraction:
            return Drop(MULTI_FACE, f"{clip.source_rel}: {s['faces_max']:.0f} faces, two or more in {s['multi_face_fraction']:.0%} "
                                    f"of the sampled frames (max {p.max_multi_face_fraction:.0%})")
        if s["face_px"] < p.min_face_px or s["face_size"] < p.min_face_size:
            return Drop(FACE_TOO_SMALL, f"{clip.source_rel}: face {s['face_px']:.0f} px, {s['face_size']:.1%} of the frame "
                                        f"(min {p.min_face_px:.0f} px, {p.min_face_size:.1%})")
        if s["yaw_abs_median"] > p.max_yaw:
            return Drop(PROFILE, f"{clip.source_rel}: median |yaw| {s['yaw_abs_median']:.1f} deg (max {p.max_yaw:g})")
        if s["pitch_abs_median"] > p.max_pitch:
            return Drop(PROFILE, f"{clip.source_rel}: median |pitch| {s['pitch_abs_median']:.1f} deg (max {p.max_pitch:g})")
        return clip
