"""``probe``: what is in a raw video, and whether it is usable at all.

Reads the container and demuxes its packets (no decoding) in one ffprobe process, to learn the true
video extent and whether the frame rate is variable: container headers of truncated or badly
muxed files routinely lie about both. Drops: ``unreadable`` (ffprobe fails or no decodable
packets), ``no_video``, ``no_audio``.

Output ``meta["probe"]``: container, video codec/size/rate/rotation, first and last video time
(``video_start``/``video_end``, seconds on the container clock), VFR flag, audio codec/rate/
channels/bit depth and ``audio_start``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.clip import NO_AUDIO, NO_VIDEO, UNREADABLE, Clip, Drop
from core.media import MediaError, ffprobe_with_packets, parse_rate
from pipeline.steps import Resources, Step


@dataclass(frozen=True)
class ProbeParams:
    """``steps.probe``."""

    vfr_tolerance: float = 0.05  # relative spread of frame intervals above which a source is VFR


class Probe(Step):
    name = "probe"
    version = "1"
    resources = Resources(cpus=1)

    def __init__(self, params: ProbeParams | None = None):
        super().__init__(params or ProbeParams())

    def __call__(self, clip: Clip, out: Path) -> Clip | Drop:
        try:
            info, packets_by_stream = ffprobe_with_packets(clip.source)
        except MediaError as e:
            return Drop(UNREADABLE, str(e))
        streams = info.get("streams", [])
        video = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
        audio = [s for s in streams if s.get("codec_type") == "audio"]
        if not video:
            return Drop(NO_VIDEO, f"{clip.source_rel}: no video stream" + (" (audio only)" if audio else ""))
        if not audio:
            return Drop(NO_AUDIO, f"{clip.source_rel}: no audio stream")
        v, a = video[0], audio[0]
        packets = packets_by_stream.get(int(v.get("index", 0)), np.zeros((0, 2)))
        if len(packets) < 2:
            return Drop(UNREADABLE, f"{clip.source_rel}: {len(packets)} decodable video packets")
        pts = packets[:, 0]
        intervals = np.diff(pts)
        intervals = intervals[intervals > 0]
        step = float(np.median(intervals)) if len(intervals) else 0.0
        spread = float((np.percentile(intervals, 95) - np.percentile(intervals, 5)) / step) if step else 0.0
        last_dur = float(packets[-1, 1]) or step
        rotation = 0
        for sd in v.get("side_data_list", []) or []:
            if "rotation" in sd:
                rotation = int(sd["rotation"])
        fmt = info.get("format", {})
        meta = {
            "container": fmt.get("format_name"),
            "format_start": float(fmt.get("start_time", 0.0) or 0.0),
            "size_bytes": int(fmt.get("size", 0) or 0),
            "video_codec": v.get("codec_name"),
            "width": int(v.get("width", 0)),
            "height": int(v.get("height", 0)),
            "rotation": rotation,
            "avg_fps": round(parse_rate(v.get("avg_frame_rate")), 4),
            "r_fps": round(parse_rate(v.get("r_frame_rate")), 4),
            "measured_fps": round(1.0 / step, 4) if step else 0.0,
            "vfr": bool(spread > self.params.vfr_tolerance),
            "video_packets": int(len(packets)),
            "video_start": float(pts[0]),
            "video_end": float(pts[-1] + last_dur),
            "audio_codec": a.get("codec_name"),
            "audio_sample_rate": int(a.get("sample_rate", 0) or 0),
            "audio_channels": int(a.get("channels", 0) or 0),
            "audio_bits": int(a.get("bits_per_raw_sample", 0) or a.get("bits_per_sample", 0) or 0),
            "audio_start": float(a.get("start_time", 0.0) or 0.0),
        }
        return clip.evolve(meta={"probe": meta})
