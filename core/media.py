"""Thin, typed wrappers around ffprobe/ffmpeg (the OS package) used by the steps.

Every call raises :class:`MediaError` carrying ffmpeg's own last lines, so a rejects row says
what ffmpeg said about the file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

#: Flags that make ffmpeg's output depend only on its input (no encoder version strings, dates).
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


class MediaError(RuntimeError):
    """ffmpeg/ffprobe failed on a file."""


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise MediaError(f"{tool} not found on PATH: install it (`apt-get install -y ffmpeg`, which `make setup` does)")


_ADDRESS = re.compile(r" @ 0x[0-9a-f]+")


def _tail(stderr: bytes, n: int = 3) -> str:
    """ffmpeg's last lines, without the memory addresses it prints (they differ run to run)."""
    text = _ADDRESS.sub("", stderr.decode("utf-8", "replace"))
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "no message"


def run_ffmpeg(args: Sequence[str], stdin: bytes | None = None, what: str = "") -> bytes:
    """Run ``ffmpeg -nostdin -v error <args>``; return stdout; raise MediaError with its message."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg failed{' on ' + what if what else ''}: {_tail(proc.stderr)}")
    return proc.stdout


def ffprobe(path: Path | str) -> dict[str, Any]:
    """Streams and format of a file (``ffprobe -show_streams -show_format``)."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"ffprobe cannot read {path}: {_tail(proc.stderr)}")
    return json.loads(proc.stdout or b"{}")


def ffprobe_with_packets(path: Path | str) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """:func:`ffprobe` and the :func:`packet_times` of every stream, from one ffprobe process.

    One demux pass instead of two processes: about half the probe time of a short clip.
    """
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
           "-show_entries", "packet=stream_index,pts_time,duration_time", str(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"ffprobe cannot read {path}: {_tail(proc.stderr)}")
    info = json.loads(proc.stdout or b"{}")
    rows: dict[int, list[tuple[float, float]]] = {}
    for pkt in info.pop("packets", None) or []:
        try:
            pts = float(pkt["pts_time"])
        except (KeyError, ValueError):
            continue  # packets without a timestamp
        try:
            dur = float(pkt.get("duration_time", 0.0))
        except ValueError:
            dur = 0.0
        rows.setdefault(int(pkt.get("stream_index", -1)), []).append((pts, dur))
    return info, {k: np.asarray(sorted(v), dtype=np.float64).reshape(-1, 2) for k, v in rows.items()}


def packet_times(path: Path | str, stream: str) -> np.ndarray:
    """``(N, 2)`` float64 array of (pts, duration) seconds of every packet of ``stream`` ("v:0").

    Demuxes without decoding: the true extent of a stream whose header lies (truncated files,
    wrong durations) and the frame timing of variable-frame-rate video.
    """
    cmd = ["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,duration_time",
           "-of", "csv=p=0", str(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise MediaError(f"ffprobe cannot read packets of {path}: {_tail(proc.stderr)}")
    rows = []
    for line in proc.stdout.decode().splitlines():
        parts = line.strip().strip(",").split(",")
        try:
            pts = float(parts[0])
        except (ValueError, IndexError):
            continue  # packets without a timestamp
        try:
            dur = float(parts[1]) if len(parts) > 1 else 0.0
        except ValueError:
            dur = 0.0
        rows.append((pts, dur))
    return np.asarray(sorted(rows), dtype=np.float64).reshape(-1, 2)


def decode_audio(path: Path | str, sample_rate: int, channels: int | None = None, stream: int = 0) -> np.ndarray:
    """The whole audio stream as mono float32 at ``sample_rate`` (soxr resampler).

    Channels are averaged in numpy (ffmpeg's own downmix applies a -3 dB centre gain per channel,
    which would make stereo speech 3 dB louder than either channel). Sample 0 is the stream's
    first decoded sample (its ``start_time``): callers align it to the video timeline themselves.
    """
    if channels is None:
        audio = [s for s in ffprobe(path).get("streams", []) if s.get("codec_type") == "audio"]
        if len(audio) <= stream:
            raise MediaError(f"{path}: no audio stream {stream}")
        channels = int(audio[stream].get("channels") or 1)
    out = run_ffmpeg(
        ["-i", str(path), "-map", f"0:a:{stream}", "-vn", "-af", f"aresample={sample_rate}:resampler=soxr",
         "-f", "f32le", "-acodec", "pcm_f32le", "-"],
        what=str(path),
    )
    x = np.frombuffer(out, dtype="<f4")
    x = x[: x.size - x.size % channels].reshape(-1, channels)
    return x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0].copy()


def parse_rate(text: str | None) -> float:
    """``"30000/1001"`` -> 29.97; ``"0/0"`` or missing -> 0.0."""
    if not text:
        return 0.0
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den) if float(den) else 0.0
    return float(text)


def frame_size(probe: dict[str, Any]) -> tuple[int, int]:
    """Display ``(width, height)`` of a probed video (ffmpeg auto-rotates 90/270-degree sources)."""
    w, h = int(probe["width"]), int(probe["height"])
    return (h, w) if abs(int(probe.get("rotation", 0) or 0)) % 180 == 90 else (w, h)


def clip_frames(source: Path | str, seek: float, fps: int, frames: int, size: tuple[int, int],
                pix_fmt: str = "rgb24", what: str = "") -> Iterator[np.ndarray]:
    """Yield exactly ``frames`` ``(h, w, 3)`` uint8 frames of a clip at constant ``fps``, scaled to ``size``.

    The same seek and ``fps`` filter as the encoder uses, so frame ``i`` here is frame ``i`` of the
    clip's mp4. Pads at most a couple of frames at the end (rounding), like the encoder.
    """
    w, h = size
    vf = f"fps=fps={fps}:start_time=0:round=near,tpad=stop_mode=clone:stop=2,scale={w}:{h}:flags=area,format={pix_fmt}"
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-filter_threads", "1", "-ss", f"{max(seek, 0.0):.6f}", "-i", str(source),
           "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-frames:v", str(frames), "-f", "rawvideo", "pipe:1"]
    nbytes = w * h * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        got = 0
        try:
            while got < frames:
                buf = proc.stdout.read(nbytes)  # type: ignore[union-attr]
                if len(buf) < nbytes:
                    break
                got += 1
                yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            rc = proc.wait()
        if got < frames:
            err.seek(0)
            detail = _tail(err.read()) if rc else "no message"
            raise MediaError(f"ffmpeg decoded {got} of {frames} frames{' of ' + what if what else ''}: {detail}")
