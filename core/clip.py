"""The records passed between steps: :class:`Clip` and :class:`Drop` (DESIGN 3.1, 3.2).

A ``Clip`` starts life as one *source* video (``start=0``, no duration yet) and becomes one
3-20 s *clip* once the segment step has split it. Steps never mutate their input; they return
``clip.evolve(...)`` copies, a list of clips (fan-out), or ``Drop(reason, message)``.

``meta`` holds each step's results under the step's name (``meta["probe"]``, ``meta["audio"]``,
...), which is the provenance of every value; ``scores`` holds the numbers later filtered by
``select``; ``files`` maps a logical name (``"mp4"``, ``"wav"``, ``"audio_npy"``) to a file
written by a step (inside the per-step cache entry); ``file_hashes`` holds their sha256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

#: Reason codes used by the ingest steps; later stages add their own (``no_face``, ``music`` ...).
UNREADABLE = "unreadable"
NO_VIDEO = "no_video"
NO_AUDIO = "no_audio"
TOO_SHORT = "too_short"


@dataclass(frozen=True)
class Drop:
    """A rejected source or clip: a reason code (``too_short``, ``error:ValueError`` ...) and why."""

    reason: str
    message: str = ""


@dataclass(frozen=True)
class Clip:
    """One source video or one clip of it, with everything the steps learned about it."""

    key: str
    dataset: str
    source: str  # absolute path of the raw video
    source_rel: str  # path relative to the dataset's raw_dir (stable across machines)
    source_hash: str  # sha256 of the raw file's bytes
    start: float = 0.0  # seconds from the start of the source's video timeline
    duration: float | None = None  # seconds; set once the clip is cut
    meta: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    file_hashes: dict[str, str] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> "Clip":
        """A copy with ``changes``; ``meta``/``scores`` updates are merged, not replaced."""
        for name in ("meta", "scores", "files", "file_hashes"):
            if name in changes:
                changes[name] = {**getattr(self, name), **changes[name]}
        return dataclasses.replace(self, **changes)

    # -- identity ---------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Content hash of this record: what a step's cache key is built from (DESIGN 3.3).

        File *paths* are left out (they point into the cache); file *contents* enter through
        ``file_hashes``, so the same content reached by another route hits the same cache entries.
        """
        body = self.to_json(include_files=False)
        body["file_hashes"] = dict(sorted(self.file_hashes.items()))
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    # -- (de)serialisation ------------------------------------------------------------------------
    def to_json(self, include_files: bool = True) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not include_files:
            d.pop("files")
            d.pop("file_hashes")
            d.pop("source")  # an absolute path differs between machines; source_hash identifies it
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Clip":
        return cls(**d)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def slug(text: str, max_len: int = 80) -> str:
    """A key-safe slug: letters, digits, ``-`` and ``_`` only (no dots: WebDataset splits keys at dots)."""
    s = _SLUG.sub("-", text).strip("-_") or "x"
    if len(s) > max_len:  # keep keys short but unique
        s = s[: max_len - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return s


def clip_key(dataset: str, source_rel: str, start_s: float, span: tuple[float, float] | None = None) -> str:
    """``<dataset>__<source-slug>__<start_ms>`` (DESIGN 3.1); a clip cut from a listed time range
    ``span`` of its source is ``<dataset>__<source-slug>__<range_tag>__<start_ms>``, so overlapping
    ranges of one source never share a key."""
    stem = source_rel.rsplit(".", 1)[0] if "." in source_rel.rsplit("/", 1)[-1] else source_rel
    tag = f"__{range_tag(span)}" if span is not None else ""
    return f"{slug(dataset)}__{slug(stem)}{tag}__{int(round(start_s * 1000)):07d}"


def range_tag(span: tuple[float, float]) -> str:
    """``<start_ms>-<end_ms>`` of a source time range (seconds): its part of source and clip keys."""
    return f"{int(round(span[0] * 1000)):07d}-{int(round(span[1] * 1000)):07d}"
