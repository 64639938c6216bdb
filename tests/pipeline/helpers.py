"""Test helpers: run steps in-process through the real runner and cache."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.cache import Cache
from core.clip import Clip, Drop
from pipeline.runner import Runner, RunnerParams
from pipeline.steps import Step


def source(path: Path, cache: Cache, dataset: str = "t") -> Clip:
    return Clip(key=f"{dataset}__{path.stem}", dataset=dataset, source=str(path), source_rel=path.name,
                source_hash=cache.source_hash(path))


def run_steps(clips: Sequence[Clip], steps: Sequence[Step], cache: Cache) -> tuple[list[Clip], list[tuple[str, Drop]]]:
    """Run ``steps`` in order (in-process); return the kept clips and ``(step, drop)`` pairs."""
    drops = []
    items = list(clips)
    with Runner(RunnerParams(local=True, progress=False), cache) as runner:
        for step in steps:
            outcome = runner.map(step, items)
            drops += [(step.name, d) for _, d in outcome.drops]
            items = outcome.kept
    return items, drops
