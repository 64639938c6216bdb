"""Decoding frames of a clip's H.264 mp4 (the shard format's video member) without torchvision.

:class:`ClipVideo` parses the mp4 sample table once (ISO-BMFF boxes: stsz/stco/stsc/stss/stts/ctts)
and decodes each request from the IDR frame of its GOP, leaving out unwanted non-reference frames;
:func:`decode_frames` is the generic fallback (OpenCV's seek) for files the index cannot read. Both
use OpenCV's FFmpeg backend with one thread: the caller (a DataLoader worker, an evaluator) is the
parallelism.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Iterator

import cv2
import numpy as np

SEEK_AHEAD = 25  # frames: beyond one GOP (steps.encode.gop) a seek is cheaper than decoding through
SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # decoder input files live in memory


# -- decoding -------------------------------------------------------------------------------------
def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, body start, end)`` of the ISO-BMFF boxes in ``data[start:end]``."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise ValueError(f"truncated {kind!r} box")
        yield kind, start + header, start + size
        start += size


def _child(data: bytes, start: int, end: int, *path: bytes) -> tuple[int, int]:
    for kind in path:
        found = next(((b, e) for k, b, e in _boxes(data, start, end) if k == kind), None)
        if found is None:
            raise ValueError(f"no {kind.decode()} box")
        start, end = found
    return start, end


def _table(data: bytes, body: int, fmt: str, columns: int = 1) -> np.ndarray:
    """Entries of a full box ``(version/flags, count, entries)`` as an ``(count, columns)`` array."""
    count = struct.unpack_from(">I", data, body + 4)[0]
    return np.frombuffer(data, np.dtype(fmt), count * columns, body + 8).reshape(count, columns).astype(np.int64)


def _video_stsd(data: bytes) -> tuple[dict[bytes, tuple[int, int]], int]:
    """The first video track's sample-table boxes ``{type: (body, end)}`` and where its first sample
    description (``stsd`` entry) starts. Raises ValueError when there is no video track."""
    moov = _child(data, 0, len(data), b"moov")
    for kind, b, e in _boxes(data, *moov):
        if kind == b"trak" and data[slice(*_child(data, b, e, b"mdia", b"hdlr"))][8:12] == b"vide":
            stbl = _child(data, b, e, b"mdia", b"minf", b"stbl")
            boxes = {k: (b, e) for k, b, e in _boxes(data, *stbl)}
            return boxes, boxes[b"stsd"][0] + 8  # past the full box's version/flags and entry count
    raise ValueError("no video track")


def video_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of the first video track's sample description (ISO 14496-12 VisualSampleEntry:
    size, type, 6 reserved bytes, data reference index, 16 pre-defined/reserved bytes, then width and height).
    ``data``: the mp4, or its start when the ``moov`` box comes first (``+faststart``) and lies inside it.
    Raises ValueError when it has no readable video track."""
    _, entry = _video_stsd(data)
    if entry + 36 > len(data):
        raise ValueError("truncated sample description")
    return struct.unpack_from(">HH", data, entry + 32)


class ClipVideo:
    """The H.264 track of a clip's mp4, indexed once so that frames decode from their own keyframe.

    OpenCV's ``CAP_PROP_POS_FRAMES`` seek lands 16 frames before the target and then on the keyframe
    before that (about 28 frames decoded for nothing per seek at GOP 25). Here the sample table
    (stsz/stco/stsc/stss/stts/ctts) gives each coded frame's bytes, display index, IDR flag and
    whether other frames reference it (``nal_ref_idc``). :meth:`decode` writes the needed GOPs as an
    Annex-B stream starting at their IDRs, leaving out the non-reference frames that are not wanted
    (nothing predicts from them) and everything after the last needed frame, and decodes it in one
    pass: the only frames decoded for nothing are the reference frames between an IDR and a wanted
    frame. Raises ValueError when the mp4 is not a closed-GOP H.264 track (the caller then uses
    :func:`decode_frames`).
    """

    def __init__(self, mp4: bytes):
        self.data = data = bytes(mp4)
        boxes, stsd = _video_stsd(data)
        size, kind = struct.unpack_from(">I4s", data, stsd)
        if kind != b"avc1":
            raise ValueError(f"video codec {kind!r}, not avc1")
        avcc = _child(data, stsd + 8 + 78, stsd + size, b"avcC")[0]
        self.length_size = (data[avcc + 4] & 3) + 1
        pos, params = avcc + 5, []
        for _ in range(2):  # SPS, then PPS
            count = data[pos] & (31 if not params else 255)
            pos += 1
            for _ in range(count):
                n = struct.unpack_from(">H", data, pos)[0]
                params.append(b"\0\0\0\1" + data[pos + 2:pos + 2 + n])
                pos += 2 + n
        self.header = b"".join(params)
        b = boxes[b"stsz"][0]
        fixed, count = struct.unpack_from(">II", data, b + 4)
        sizes = np.full(count, fixed, np.int64) if fixed else np.frombuffer(data, ">u4", count, b + 12).astype(np.int64)
        chunks = _table(data, boxes[b"stco"][0], ">u4")[:, 0] if b"stco" in boxes else _table(data, boxes[b"co64"][0], ">u8")[:, 0]
        stsc = _table(data, boxes[b"stsc"][0], ">u4", 3)
        per_chunk = np.zeros(len(chunks), np.int64)
        for (first, n, _), nxt in zip(stsc, [*stsc[1:, 0], len(chunks) + 1]):
            per_chunk[first - 1:nxt - 1] = n
        if per_chunk.sum() != count:
            raise ValueError("sample-to-chunk table does not cover the samples")
        chunk = np.repeat(np.arange(len(chunks)), per_chunk)
        ends = np.cumsum(sizes)
        chunk_start = np.repeat(np.r_[0, ends][np.cumsum(per_chunk) - per_chunk], per_chunk)  # bytes before each chunk's first sample
        self.offsets = chunks[chunk] + (ends - sizes) - chunk_start
        self.sizes = sizes
        stts = _table(data, boxes[b"stts"][0], ">u4", 2)
        dts = np.r_[0, np.cumsum(np.repeat(stts[:, 1], stts[:, 0]))][:count]
        pts = dts.copy()
        if b"ctts" in boxes:
            ctts = _table(data, boxes[b"ctts"][0], ">i4", 2)
            pts += np.repeat(ctts[:, 1], ctts[:, 0])[:count]
        order = np.argsort(pts, kind="stable")
        self.display = np.empty(count, np.int64)  # display index of each coded frame (decode order)
        self.display[order] = np.arange(count)
        self.coded = order  # coded position of each display index
        sync = set((_table(data, boxes[b"stss"][0], ">u4")[:, 0] - 1).tolist()) if b"stss" in boxes else set(range(count))
        self.idr = np.zeros(count, bool)
        self.reference = np.ones(count, bool)
        for i, (off, n) in enumerate(zip(self.offsets.tolist(), sizes.tolist())):
            for nal in self._nals(off, n):
                kind = data[nal] & 31
                if kind in (1, 5):  # the first slice says the frame's type
                    self.idr[i], self.reference[i] = kind == 5, bool(data[nal] & 0x60)
                    break
        if not self.idr[0] or any(not self.idr[i] for i in sync):
            raise ValueError("a sync sample is not an IDR frame (open GOP)")
        self.gop = np.cumsum(self.idr) - 1  # GOP of each coded frame
        self.gop_start = np.flatnonzero(self.idr)
        self.frames = count

    @property
    def keyframes(self) -> np.ndarray:
        """Display indices of the IDR frames, ascending."""
        return np.sort(self.display[self.idr])

    def _nals(self, offset: int, size: int) -> Iterator[int]:
        """Start of each NAL unit (its header byte) in a length-prefixed sample."""
        pos, end, length = offset, offset + size, self.length_size
        while pos + length < end:
            n = int.from_bytes(self.data[pos:pos + length], "big")
            yield pos + length
            pos += length + n

    def plan(self, indices: list[int]) -> tuple[np.ndarray, list[int]]:
        """Coded frames to feed the decoder (decode order) and the display index of each output frame."""
        wanted = np.unique(np.asarray(indices, np.int64))
        if wanted.size and (wanted[0] < 0 or wanted[-1] >= self.frames):
            raise ValueError(f"frame {int(wanted[-1] if wanted[-1] >= self.frames else wanted[0])} is outside the clip's {self.frames} frames")
        coded = self.coded[wanted]
        keep = np.zeros(self.frames, bool)
        for gop in np.unique(self.gop[coded]):
            last = int(coded[self.gop[coded] == gop].max())
            span = np.arange(self.gop_start[gop], last + 1)
            keep[span] = self.reference[span]
        keep[coded] = True
        feed = np.flatnonzero(keep)
        return feed, np.sort(self.display[feed]).tolist()

    def decode(self, indices: list[int], size: int) -> dict[int, np.ndarray]:
        """BGR uint8 frames ``(size, size, 3)`` at the given display indices."""
        feed, shown = self.plan(indices)
        wanted = set(int(i) for i in indices)
        parts = [self.header]
        for i in feed.tolist():
            for nal in self._nals(int(self.offsets[i]), int(self.sizes[i])):
                n = int.from_bytes(self.data[nal - self.length_size:nal], "big")
                parts += (b"\0\0\0\1", self.data[nal:nal + n])
        out: dict[int, np.ndarray] = {}
        with tempfile.NamedTemporaryFile(suffix=".h264", dir=SHM) as f:
            f.write(b"".join(parts))
            f.flush()
            cap = cv2.VideoCapture(f.name, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            try:
                for index in shown:
                    if len(out) == len(wanted):
                        break
                    if index not in wanted:
                        ok = cap.grab()  # decoded, not converted
                    else:
                        ok, bgr = cap.read()
                        if ok:
                            out[index] = _resized(bgr, size)
                    if not ok:
                        raise ValueError(f"frame {index} could not be decoded")
            finally:
                cap.release()
        return out


def _resized(bgr: np.ndarray, size: int) -> np.ndarray:
    if bgr.shape[0] != size or bgr.shape[1] != size:
        return cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    return bgr


def decode_frames(mp4: bytes, indices: list[int], size: int, rgb: bool = True) -> dict[int, np.ndarray]:
    """Frames ``(size, size, 3)`` uint8 (RGB, or BGR) of the clip at the given frame indices.

    The generic path (any container OpenCV reads): OpenCV seeks with ``CAP_PROP_POS_FRAMES``.
    :class:`ClipVideo` decodes the same frames with far fewer decoded for nothing."""
    wanted = sorted(set(indices))
    with tempfile.NamedTemporaryFile(suffix=".mp4", dir=SHM) as f:
        f.write(mp4)
        f.flush()
        cap = cv2.VideoCapture(f.name, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        try:
            out: dict[int, np.ndarray] = {}
            pos = 0
            for index in wanted:
                if index - pos > SEEK_AHEAD or index < pos:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                    pos = index
                while pos < index:  # decode without colour conversion
                    if not cap.grab():
                        raise ValueError(f"frame {pos} could not be decoded")
                    pos += 1
                ok, bgr = cap.read()
                if not ok:
                    raise ValueError(f"frame {index} could not be decoded")
                pos += 1
                bgr = _resized(bgr, size)
                out[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if rgb else bgr
            return out
        finally:
            cap.release()
