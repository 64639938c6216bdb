"""What a shard sample holds, as its writer declares it: :class:`Member` and the ``members.json`` of a shard set.

Part of the shard format (:mod:`core.shards`, which re-exports these names): each extractor declares the
files it writes (``MEMBERS``), the extract stage checks every written file against the declaration and
stores it as the sidecar's ``members.json``, and the training loader reads only that file to know which
member fills which sample entry and how it is cut.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

MEMBERS = "members.json"


class ShardFormatError(ValueError):
    """A shard set does not match the format: a bad name, member, declaration or alignment."""


Window = Literal["clip", "frames", "audio", "mean"]


@dataclass(frozen=True)
class Member:
    """One file of a shard sample, ``<key>.<name>``, as its writer declares it.

    ``shape`` lists the dimensions of an ``.npy`` member: an int is fixed, ``"frames"`` is the clip's
    frame count, any other string a size the writer's model decides (``"layers"``, ``"classes"``).
    ``sample`` names the training-sample entry the member fills ("" when the loader does not read
    it) and ``window`` how the loader cuts it for a sample: ``clip`` (the whole array), ``frames``
    (the rows of the sample's frames), ``audio`` (the rows of the sample's audio window, the frames
    widened by the audio context), ``mean`` (the mean of the frames' rows). ``columns`` keeps the
    first N columns (valence-arousal keeps valence and arousal of [v, a, d]).
    """

    name: str
    dtype: str = ""
    shape: tuple[int | str, ...] = ()
    doc: str = ""
    sample: str = ""
    window: Window = "clip"
    columns: int | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ShardFormatError(f"member name {self.name!r} must be a plain extension such as 'frames.npy'")
        if self.window not in ("clip", "frames", "audio", "mean"):
            raise ShardFormatError(f"member {self.name}: window {self.window!r} is not clip, frames, audio or mean")
        if self.window != "clip" and (not self.shape or self.shape[0] != "frames"):
            raise ShardFormatError(f"member {self.name}: window {self.window!r} needs a per-frame shape ('frames', ...)")

    @property
    def per_frame(self) -> bool:
        return bool(self.shape) and self.shape[0] == "frames"

    def check(self, data: bytes, frames: int | None = None, where: str = "") -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of an ``.npy`` member's bytes, checked against the declaration (header only)."""
        where = where or self.name
        try:
            stream = io.BytesIO(data)
            version = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(stream)  # the header only: no copy of the data
        except (ValueError, OSError) as e:
            raise ShardFormatError(f"{where}: not a readable .npy array ({e})") from None
        if self.dtype and np.dtype(dtype) != np.dtype(self.dtype):
            raise ShardFormatError(f"{where}: dtype {np.dtype(dtype)}, declared {self.dtype}")
        if self.shape:
            if len(shape) != len(self.shape):
                raise ShardFormatError(f"{where}: shape {tuple(shape)}, declared {self.shape}")
            for got, want in zip(shape, self.shape):
                if (isinstance(want, int) and got != want) or (want == "frames" and frames is not None and got != frames):
                    expected = frames if want == "frames" else want
                    raise ShardFormatError(f"{where}: shape {tuple(shape)}, declared {self.shape} ({want} = {expected})")
        return tuple(shape), np.dtype(dtype)


#: What every clip shard sample holds (written by ingest; ``landmarks.npy`` only with the face steps).
CLIP_MEMBERS = (
    Member("json", doc="the clip record: source, timing, per-step metadata and provenance, scores, file hashes"),
    Member("mp4", doc="25 fps H.264 face crop (512x512 by default), +faststart"),
    Member("wav", doc="16 kHz mono PCM, loudness-normalised"),
    Member("landmarks.npy", "float16", ("frames", 478, 3), "MediaPipe landmarks in crop pixels (NaN where no face)",
           sample="landmarks", window="frames"),
)


def write_members(folder: Path, feature: str, members: Sequence[Member]) -> None:
    body = {"format": 1, "feature": feature,
            "members": [{**dataclasses.asdict(m), "shape": list(m.shape)} for m in members]}
    (Path(folder) / MEMBERS).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def read_members(folder: Path | str) -> tuple[Member, ...]:
    """The members a sidecar's writer declared (``members.json``); a clear error when absent or bad."""
    path = Path(folder) / MEMBERS
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        return tuple(Member(**{**m, "shape": tuple(m.get("shape", ()))}) for m in body["members"])
    except FileNotFoundError:
        raise ShardFormatError(f"{path} not found: the sidecar was written before members were declared or is "
                               f"incomplete; re-run its extract stage (`dvc repro extract@<feature>-<dataset>`)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ShardFormatError(f"{path}: not a members declaration ({e}); re-run its extract stage") from None
