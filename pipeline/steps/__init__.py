"""The step contract (DESIGN 3.2): one module = one step = one frozen Params + one Step class.

A step::

    class Probe(Step):
        name = "probe"
        version = "1"                    # bump when the output for the same input changes
        resources = Resources(cpus=1)    # what one call needs; the runner maps it to Ray options

        def setup(self): ...             # load models once per worker (local folders only)
        def __call__(self, clip, out):   # -> Clip | list[Clip] | Drop
            ...

``out`` is an empty private folder: files the step writes there and references from
``clip.files`` are moved into the cache with the result. Steps never import Ray, never keep
global state, and never mutate their input clip. Extractors that batch implement ``process``
instead (see :mod:`pipeline.features`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence, Union

from core import params as params_mod
from core.clip import Clip, Drop

StepOutput = Union[Clip, list[Clip], Drop]
Result = Union[list[Clip], Drop]


@dataclass(frozen=True)
class Resources:
    """What one worker of a step needs. Fractional GPUs are allowed (several actors per GPU)."""

    cpus: float = 1.0
    gpus: float = 0.0


class Step:
    """Base class of every step and extractor."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    resources: Resources = Resources()
    batch_size: int = 1  # > 1: the runner calls ``process`` with up to this many clips

    def __init__(self, params: Any = None):
        self.params = params

    # -- identity (part of every cache key) -------------------------------------------------------
    def weights_fingerprint(self) -> str:
        """Fingerprint of the model weights the step loads ("" for steps without a model)."""
        return ""

    def identity(self) -> str:
        p = params_mod.fingerprint(self.params) if self.params is not None else ""
        raw = f"{self.name}|{self.version}|{p}|{self.weights_fingerprint()}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def input_fingerprint(self, clip: Clip) -> str:
        """What of ``clip`` the result depends on (with :meth:`identity`, the cache key): the whole record
        here; extractors narrow it to what they read (:attr:`pipeline.features.Extractor.reads`)."""
        return clip.fingerprint()

    def adopt(self, clip: Clip, result: Result) -> Result:
        """``result``, maybe cached for another clip with the same inputs, as the result for ``clip``: a hit
        written by another checkout or machine (the cache is shared) names that one's absolute source path,
        so the clips of the same source take this run's path (the key and ``source_hash`` identify the source)."""
        if isinstance(result, Drop):
            return result
        return [c if c.source == clip.source or c.source_hash != clip.source_hash else c.evolve(source=clip.source)
                for c in result]

    # -- work -------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load models and other per-worker state. Called once per worker before the first clip."""

    def __call__(self, clip: Clip, out: Path) -> StepOutput:
        raise NotImplementedError

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[StepOutput]:
        """A batch of clips (one output folder each); the default calls ``__call__`` per clip."""
        return [self(c, o) for c, o in zip(clips, outs)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def as_result(output: StepOutput) -> Union[list[Clip], Drop]:
    """Normalise a step's return value to ``list[Clip]`` or ``Drop``."""
    if isinstance(output, Drop):
        return output
    if isinstance(output, Clip):
        return [output]
    if isinstance(output, list) and all(isinstance(c, Clip) for c in output):
        if not output:
            return Drop("empty", "the step returned no clips")
        return output
    raise TypeError(f"a step must return a Clip, a list of Clips or a Drop, got {type(output).__name__}")
