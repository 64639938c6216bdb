"""Which listed sources are distinct: one record per content and per clip key (DESIGN 3.1).

Decided before any compute, on the source records of :func:`pipeline.ingest.source_records`
(``(N,)`` records in, ``(M <= N,)`` out, each dropped one a rejects row naming its kept twin):

* ``duplicate_source``: the same bytes (``source_hash``, and the same listed time range) under
  another name: the first by name is kept, so one recording never lands in two splits under two
  names;
* ``key_collision``: another name that maps to the same clip key (``a b.mp4`` and ``a-b.mp4``,
  ``x.mp4`` and ``x.mov``: keys are slugs of the name without its suffix); rename one to keep both.
"""

from __future__ import annotations

from core.clip import Clip
from core.shards import Reject

DUPLICATE_SOURCE = "duplicate_source"
KEY_COLLISION = "key_collision"


def distinct(dataset: str, items: list[Clip]) -> tuple[list[Clip], list[Reject]]:
    """``items`` (sorted by name) without content duplicates and key collisions, and their rejects."""
    kept: list[Clip] = []
    rejects: list[Reject] = []
    by_content: dict[tuple[str, str], Clip] = {}
    by_key: dict[str, Clip] = {}
    for clip in sorted(items, key=lambda c: (c.source_rel, c.key)):
        content = (clip.source_hash, repr(clip.meta.get("range")))
        twin = by_content.get(content)
        if twin is not None:
            rejects.append(Reject(dataset, clip.source_rel, "", "list", DUPLICATE_SOURCE,
                                  f"{clip.source_rel}: the same content as {twin.source_rel} (sha256 {clip.source_hash[:16]}), "
                                  f"which is kept"))
            continue
        twin = by_key.get(clip.key)
        if twin is not None:
            rejects.append(Reject(dataset, clip.source_rel, "", "list", KEY_COLLISION,
                                  f"{clip.source_rel}: maps to the clip key {clip.key} of {twin.source_rel}, which is kept; "
                                  f"rename one of them to keep both"))
            continue
        by_content[content], by_key[clip.key] = clip, clip
        kept.append(clip)
    order = {id(c): i for i, c in enumerate(items)}
    return sorted(kept, key=lambda c: order[id(c)]), rejects
