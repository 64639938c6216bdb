"""Feature extractors: the ``extract@<feature>-<dataset>`` contract (DESIGN 3.2, 3.4, 5).

A feature is a module ``pipeline/features/<feature>.py`` defining

* ``Params``: a frozen dataclass, the ``features.<feature>`` section of params.yaml (it may use
  the common keys of :class:`FeatureParams`: ``enabled``, ``batch_size``, ``cpus``, ``gpus``);
* ``WEIGHTS``: the :class:`~core.weights.ModelSpec` of every model it loads;
* ``MEMBERS``: the :class:`~core.shards.Member` files each sidecar sample holds besides its json
  (name, dtype, shape, and the training-sample entry it fills): the extract stage checks every
  written file against them and stores them as the sidecar's ``members.json``, which is all the
  training loader knows of the feature;
* ``READS`` (optional): the other features it may read (``needs``), so that its DVC stage depends
  on their code too (``pipeline/features/code/<feature>/``, see :mod:`pipeline.features.code_links`);
* ``Extractor``: a subclass of :class:`Extractor`, whose ``reads`` names what it reads of a clip
  (``files.wav``, ``meta.encode.frames`` ...): with its params, version, weights and the outputs of
  the features it ``needs``, exactly what its per-clip cache key covers (DESIGN 3.3).

Adding a feature: this module, a ``features.<feature>`` entry in params.yaml, and
``python -m pipeline.features.code_links``; to put it in training samples, list it in
``data.stage1_features`` / ``data.stage2_features``.

An extractor gets clips whose ``files`` hold the clip's ``mp4`` and ``wav`` (and the files of the
features it ``needs``), and returns the clip with its outputs under ``files["<feature>.<ext>"]``
and its values under ``meta[<feature>]``. ``pipeline.extract`` turns these into sidecar members
``<key>.<ext>`` plus ``<key>.json`` (values + provenance: version, params, weights fingerprint,
``tiny``) aligned with the clip shards.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Iterable

from core import weights as weights_mod
from core.clip import Clip, Drop, canonical_json
from core.hashing import sha256_file
from pipeline.steps import Resources, Result, Step

#: what an audio feature reads: the wav and the frame grid its per-frame values follow
AUDIO_READS = ("files.wav", "meta.encode.frames", "meta.encode.fps")
#: what a visual feature reads: the frames (the mp4) and their count, rate and size
VIDEO_READS = ("files.mp4", "meta.encode.frames", "meta.encode.fps", "meta.encode.width", "meta.encode.height")


@dataclass(frozen=True)
class FeatureParams:
    """Keys every ``features.<feature>`` section understands (subclass it for a feature's own)."""

    enabled: bool = True
    module: str = ""  # module name when it differs from the feature name (dotted path allowed)
    batch_size: int = 1
    cpus: float = 1.0
    gpus: float = 0.0  # per actor; fractional values share a GPU between actors


class Extractor(Step):
    """A batched step that loads models from verified local folders."""

    weights: ClassVar[tuple[weights_mod.ModelSpec, ...]] = ()
    # Other features whose outputs this one reads (``files["<feature>.<ext>"]``). An extractor may
    # set ``self.needs`` in ``__init__`` from its params and ``self.enabled_features``.
    needs: tuple[str, ...] = ()
    gpu_optional: ClassVar[bool] = True  # no GPU in the cluster: run on CPU instead of failing
    # What it reads of a clip: ``files.<name>`` (that file's sha256), ``meta.<step>.<key>`` (a value) or a
    # record field (``duration``). The cache key covers these, the outputs of ``needs`` and the identity
    # only, so a change nothing here reads (``steps.encode.crf`` for an audio feature) keeps its entries.
    # ``None``: the whole clip record (any change upstream recomputes).
    reads: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, params: FeatureParams, weights_params: weights_mod.WeightsParams, root: Path = Path("."),
                 features: Iterable[str] | None = None):
        super().__init__(params)
        #: the features enabled in params.yaml (``features.<name>.enabled``), for conditional ``needs``
        self.enabled_features = frozenset(features or ())
        self.resources = Resources(cpus=params.cpus, gpus=params.gpus)
        self.batch_size = params.batch_size
        # Resolved in the driver: a missing paper folder fails before any worker starts, and tiny
        # stand-ins are generated once, not by every worker.
        self.folders = {spec.name: weights_mod.ensure(spec, weights_params, root) for spec in self.weights}
        self._weights_fp = "|".join(f"{n}={weights_mod.fingerprint(p)}" for n, p in sorted(self.folders.items()))
        self.tiny = any(weights_mod.is_tiny(p) for p in self.folders.values())

    def weights_fingerprint(self) -> str:
        return self._weights_fp

    def input_fingerprint(self, clip: Clip) -> str:
        if self.reads is None:
            return clip.fingerprint()
        return inputs_fingerprint(clip, self.reads, self.needs)

    def adopt(self, clip: Clip, result: Result) -> Result:
        """Only this feature's outputs (its ``meta``, ``<name>.*`` files, ``<name>*`` scores) of a result,
        on ``clip``: a cache hit may come from another clip with the same inputs (same wav, other mp4)."""
        if isinstance(result, Drop):
            return result
        mine = lambda d: {k: v for k, v in d.items() if k.startswith(f"{self.name}.")}  # noqa: E731
        return [clip.evolve(meta={self.name: out.meta[self.name]} if self.name in out.meta else {},
                            scores={k: v for k, v in out.scores.items() if k.startswith(self.name)},
                            files=mine(out.files), file_hashes=mine(out.file_hashes)) for out in result]

    def provenance(self) -> dict[str, Any]:
        """What every sidecar json of this feature records about how it was computed."""
        from core import params as params_mod

        return {
            "feature": self.name, "version": self.version, "params": params_mod.as_dict(self.params),
            "weights": {n: weights_mod.fingerprint(p)[:16] for n, p in sorted(self.folders.items())},
            "tiny": self.tiny,
        }


def inputs_fingerprint(clip: Clip, reads: Iterable[str], needs: Iterable[str] = ()) -> str:
    """sha256 of the ``reads`` of ``clip`` (see :attr:`Extractor.reads`; an absent one counts as null)
    and of the outputs of the features in ``needs`` (their ``meta`` and the hashes of their files)."""
    body: dict[str, Any] = {}
    for path in reads:
        kind, _, rest = path.partition(".")
        if kind == "files":
            body[path] = (clip.file_hashes.get(rest) or sha256_file(clip.files[rest])) if rest in clip.files else None
        elif kind == "meta":
            value: Any = clip.meta
            for part in rest.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            body[path] = value
        elif kind in ("duration", "start", "source_hash", "key") and not rest:
            body[path] = getattr(clip, kind)
        else:
            raise ValueError(f"reads: {path!r} is not files.<name>, meta.<step>.<key>, duration, start, source_hash or key")
    for need in needs:
        body[f"needs.{need}"] = {"meta": clip.meta.get(need),
                                 "files": {n: h for n, h in sorted(clip.file_hashes.items()) if n.startswith(f"{need}.")}}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def torch_device(spec: str) -> Any:
    """The ``torch.device`` of a feature's ``device`` param: ``auto`` is cuda when visible, else cpu."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def enabled(data: dict[str, Any]) -> list[str]:
    """Names of the features enabled in a params dict (``features.<name>.enabled``, default true)."""
    return [name for name, entry in (data.get("features") or {}).items() if (entry or {}).get("enabled", True) is not False]


def load_module(feature: str, module: str = "") -> ModuleType:
    name = module or feature
    path = name if "." in name else f"pipeline.features.{name}"
    try:
        mod = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name == path:
            raise ValueError(f"feature '{feature}': no module {path} (add pipeline/features/{name}.py or set features.{feature}.module)") from None
        raise
    for attr in ("Params", "Extractor"):
        if not hasattr(mod, attr):
            raise ValueError(f"feature module {path} must define {attr}")
    return mod
