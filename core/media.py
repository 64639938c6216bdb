"""Thin, typed wrappers around ffprobe/ffmpeg (the OS package) used by the steps.

Every call raises :class:`MediaError` carrying ffmpeg's own last lines, so a rejects row says
what ffmpeg said about the file. Every call has a time limit (:func:`timeout_s`: the runner sets
``$SYNCHRORAMA_MEDIA_TIMEOUT_S`` from ``runner.media_timeout_s`` in its workers): a process that
hangs on a file is killed and raises :class:`Timeout` (reject reason ``error:Timeout``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.storage import is_transient

#: Flags that make ffmpeg's output depend only on its input (no encoder version strings, dates).
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


TIMEOUT_ENV = "SYNCHRORAMA_MEDIA_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class MediaError(RuntimeError):
    """ffmpeg/ffprobe failed on a file."""


class Timeout(MediaError):
    """ffmpeg/ffprobe ran longer than :func:`timeout_s` on a file and was killed."""


def not_the_files_fault(e: BaseException, source: str = "") -> bool:
    """Whether a failure must not become a reason-coded reject of the file: a :class:`Timeout` (the
    runner makes it ``error:Timeout``) or a storage failure (:func:`core.storage.is_transient`: the
    stage stops). Steps re-raise these instead of returning ``unreadable``. ``source``: the file's
    path, which ffmpeg's message repeats (it may contain any words)."""
    return isinstance(e, Timeout) or is_transient(e, (str(source),))


def timeout_s() -> float:
    """Seconds one ffmpeg/ffprobe process may run (``$SYNCHRORAMA_MEDIA_TIMEOUT_S``, else 600)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def run_media(cmd: Sequence[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True)`` killed after :func:`timeout_s` (:class:`Timeout`)."""
    limit = timeout_s()
    try:
        return subprocess.run(list(cmd), capture_output=True, timeout=limit, **kwargs)
    except subprocess.TimeoutExpired:
        raise Timeout(f"{cmd[0]} ran longer than {limit:g} s on {what} and was killed (runner.media_timeout_s)") from None


class Deadline:
    """Kills a ``Popen`` after :func:`timeout_s` (context manager); ``expired`` says whether it did."""

    def __init__(self, proc: subprocess.Popen, what: str):
        self.proc, self.what, self.limit = proc, what, timeout_s()
        self.timer = threading.Timer(self.limit, self._kill)
        self.expired = False

    def _kill(self) -> None:
        self.expired = True
        self.proc.kill()

    def __enter__(self) -> "Deadline":
        self.timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.timer.cancel()

    def check(self) -> None:
        if self.expired:
            raise Timeout(f"ffmpeg ran longer than {self.limit:g} s on {self.what} and was killed (runner.media_timeout_s)")


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
    proc = run_media(cmd, what or "a pipe", input=stdin)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg failed{' on ' + what if what else ''}: {_tail(proc.stderr)}")
    return proc.stdout


def ffprobe(path: Path | str) -> dict[str, Any]:
    """Streams and format of a file (``ffprobe -show_streams -show_format``)."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)]
    proc = run_media(cmd, str(path))
    if proc.returncode != 0:
        raise MediaError(f"ffprobe cannot read {path}: {_tail(proc.stderr)}")
    return json.loads(proc.stdout or b"{}")


def ffprobe_with_packets(path: Path | str, read_intervals: str | None = None) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """:func:`ffprobe` and the :func:`packet_times` of every stream, from one ffprobe process.

    One demux pass instead of two processes: about half the probe time of a short clip.
    ``read_intervals`` (ffprobe's syntax, container-clock seconds: ``"%+2"``, ``"300.5%310.5"``) seeks
    and demuxes only those parts, so probing a range of a long source costs the range, not the source.
    """
    intervals = ["-read_intervals", read_intervals] if read_intervals else []
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", *intervals,
           "-show_entries", "packet=stream_index,pts_time,duration_time", str(path)]
    proc = run_media(cmd, str(path))
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
    proc = run_media(cmd, str(path))
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


def decode_audio(path: Path | str, sample_rate: int, channels: int | None = None, stream: int = 0,
                 seek: float | None = None, duration: float | None = None) -> np.ndarray:
    """The whole audio stream as mono float32 at ``sample_rate`` (soxr resampler).

    Channels are averaged in numpy (ffmpeg's own downmix applies a -3 dB centre gain per channel,
    which would make stereo speech 3 dB louder than either channel). Sample 0 is the stream's
    first decoded sample (its ``start_time``): callers align it to the video timeline themselves.
    ``seek``/``duration`` (seconds, ``-ss``/``-t`` before ``-i``: input seeking, so only that part is
    read and decoded) cut a part: sample 0 then sits at ``max(format start + seek, stream start)``.
    """
    cut = (["-ss", f"{max(seek, 0.0):.6f}"] if seek is not None else []) + (["-t", f"{duration:.6f}"] if duration is not None else [])
    if channels is None:
        audio = [s for s in ffprobe(path).get("streams", []) if s.get("codec_type") == "audio"]
        if len(audio) <= stream:
            raise MediaError(f"{path}: no audio stream {stream}")
        channels = int(audio[stream].get("channels") or 1)
    out = run_ffmpeg(
        [*cut, "-i", str(path), "-map", f"0:a:{stream}", "-vn", "-af", f"aresample={sample_rate}:resampler=soxr",
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


def picked_frames(frames: int, every: Sequence[int] = ()) -> list[int]:
    """The frame indices :func:`clip_frames` yields with ``every``: each ``i < frames`` that is a multiple
    of at least one of ``every`` (all frames when ``every`` is empty)."""
    return [i for i in range(frames) if not every or any(i % e == 0 for e in every)]


def clip_frames(source: Path | str, seek: float, fps: int, frames: int, size: tuple[int, int],
                pix_fmt: str = "rgb24", what: str = "", every: Sequence[int] = ()) -> Iterator[np.ndarray]:
    """Yield ``(h, w, 3)`` uint8 frames of a clip of ``frames`` frames at constant ``fps``, scaled to ``size``.

    The same seek and ``fps`` filter as the encoder uses, so frame ``i`` here is frame ``i`` of the
    clip's mp4. Pads at most a couple of frames at the end (rounding), like the encoder. ``every``:
    only the frames :func:`picked_frames` lists, in order (every frame is still decoded, but the others
    are dropped before scaling and conversion: the same pixels for the frames kept, less work).
    """
    w, h = size
    picked = len(picked_frames(frames, every)) if every else frames
    select = "select=" + "+".join(f"not(mod(n\\,{int(e)}))" for e in every) + "," if every else ""
    vf = f"fps=fps={fps}:start_time=0:round=near,tpad=stop_mode=clone:stop=2,{select}scale={w}:{h}:flags=area,format={pix_fmt}"
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-filter_threads", "1", "-ss", f"{max(seek, 0.0):.6f}", "-i", str(source),
           "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-frames:v", str(picked),
           # the frames select drops leave gaps in time that a constant-rate output would fill with copies
           *(["-fps_mode", "passthrough"] if every else []), "-f", "rawvideo", "pipe:1"]
    nbytes = w * h * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        got = 0
        with Deadline(proc, what or str(source)) as deadline:
            try:
                while got < picked:
                    buf = proc.stdout.read(nbytes)  # type: ignore[union-attr]
                    if len(buf) < nbytes:
                        break
                    got += 1
                    yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
            finally:
                proc.stdout.close()  # type: ignore[union-attr]
                rc = proc.wait()
        deadline.check()
        if got < picked:
            err.seek(0)
            detail = _tail(err.read()) if rc else "no message"
            raise MediaError(f"ffmpeg decoded {got} of {picked} frames{' of ' + what if what else ''}: {detail}")
