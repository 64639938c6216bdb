"""``probe``: what is in a raw video, and whether it is usable at all.

Reads the container and demuxes its packets (no decoding) in one ffprobe process, to learn the true
video extent and whether the frame rate is variable: container headers of truncated or badly
muxed files routinely lie about both. Drops: ``unreadable`` (ffprobe fails, no stream at all, as
with a corrupt moov atom, or no decodable packets), ``no_video``, ``no_audio``, ``too_short`` (one
video frame).

Output ``meta["probe"]``: container, video codec/size/rate/rotation, first and last video time
(``video_start``/``video_end``, seconds on the container clock), VFR flag, audio codec/rate/
channels/bit depth and ``audio_start``.

A record listed with a time range (``meta["range"]``: ``start``/``end`` seconds on the video
timeline, from a metadata table) is probed by seeking: the first two seconds (where the streams
start) and the packets of the range only (ffprobe ``-read_intervals``), so the cost follows the
range, not the source. ``video_end`` is then the end of the range's last packet (the source's end
when the range runs past it) and the VFR flag and packet count describe the range. Drop:
``bad_range`` when no video lies in the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.clip import NO_AUDIO, NO_VIDEO, TOO_SHORT, UNREADABLE, Clip, Drop
from core.media import MediaError, not_the_files_fault, ffprobe_with_packets, parse_rate
from pipeline.steps import Resources, Step

BAD_RANGE = "bad_range"  # a listed time range holds no video (or is empty)


@dataclass(frozen=True)
class ProbeParams:
    """``steps.probe``."""

    vfr_tolerance: float = 0.05  # relative spread of frame intervals above which a source is VFR


class Probe(Step):
    name = "probe"
    version = "2"  # 2: corrupt container -> unreadable, one frame -> too_short
    resources = Resources(cpus=1)

    def __init__(self, params: ProbeParams | None = None):
        super().__init__(params or ProbeParams())

    def __call__(self, clip: Clip, out: Path) -> Clip | Drop:
        span = clip.meta.get("range")
        try:
            info, packets_by_stream = ffprobe_with_packets(clip.source, "%+2" if span else None)
        except MediaError as e:
            if not_the_files_fault(e, clip.source):
                raise
            return Drop(UNREADABLE, str(e))
        streams = info.get("streams", [])
        video = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
        audio = [s for s in streams if s.get("codec_type") == "audio"]
        if not streams:  # a damaged container (e.g. a corrupt moov atom) that ffprobe opens but finds nothing in
            return Drop(UNREADABLE, f"{clip.source_rel}: no readable streams in the container (damaged or not a media file)")
        if not video:
            return Drop(NO_VIDEO, f"{clip.source_rel}: no video stream" + (" (audio only)" if audio else ""))
        if not audio:
            return Drop(NO_AUDIO, f"{clip.source_rel}: no audio stream")
        v, a = video[0], audio[0]
        packets = packets_by_stream.get(int(v.get("index", 0)), np.zeros((0, 2)))
        origin = float(packets[0, 0]) if len(packets) else 0.0  # the video timeline's zero on the container clock
        if span and len(packets):
            try:
                _, in_range = ffprobe_with_packets(clip.source, f"{origin + float(span['start']):.6f}%{origin + float(span['end']):.6f}")
            except MediaError as e:
                if not_the_files_fault(e, clip.source):
                    raise
                return Drop(UNREADABLE, str(e))
            packets = in_range.get(int(v.get("index", 0)), np.zeros((0, 2)))
            if len(packets) < 2 or packets[-1, 0] <= origin + float(span["start"]):
                return Drop(BAD_RANGE, f"{clip.source_rel}: no video in the listed range {span['start']:g}-{span['end']:g} s "
                                       "(it starts past the end of the source?)")
        if len(packets) == 1:  # a still image with sound: readable, but no motion to learn from
            return Drop(TOO_SHORT, f"{clip.source_rel}: one video frame")
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
            "video_start": origin,
            "video_end": float(pts[-1] + last_dur),
            "audio_codec": a.get("codec_name"),
            "audio_sample_rate": int(a.get("sample_rate", 0) or 0),
            "audio_channels": int(a.get("channels", 0) or 0),
            "audio_bits": int(a.get("bits_per_raw_sample", 0) or a.get("bits_per_sample", 0) or 0),
            "audio_start": float(a.get("start_time", 0.0) or 0.0),
        }
        return clip.evolve(meta={"probe": meta})
