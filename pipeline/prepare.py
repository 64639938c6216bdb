"""``python -m pipeline.prepare``: a reference image + driving audio -> a one-clip dataset for generation.

    python -m pipeline.prepare --image REF.png --audio DRIVING.wav [--caption TEXT] --out DIR [--name generate]

Inference (``python -m model.generate``) runs this as a subprocess and reads ``DIR`` with
``core.shards.ShardLayout(DIR)``, exactly as the training loader reads a split. The inputs take the
training data's own path, shared code throughout:

1. **Source**: the image (decoded as OpenCV reads it: EXIF orientation applied, alpha dropped, padded
   to even sides by repeating the last row/column) becomes a still 25 fps video as long as the audio,
   losslessly encoded (x264 RGB, qp 0), with the driving audio's first stream muxed in unchanged.
2. **Ingest steps** (:mod:`pipeline.steps`, ``steps.*`` params, in-process through the runner and
   the per-clip cache): probe -> audio (16 kHz mono, loudness) -> segment with ``min_s`` 0.5 and no
   ``max_s`` (ONE clip covering the whole audio, no cuts at silences) -> face (MediaPipe) -> face
   filter (the ingest thresholds) -> encode (the ``steps.face.size`` face crop, 25 fps H.264 + wav).
3. **Features** (:func:`pipeline.extract.run`, the extractors' own classes and ``features.*`` params
   and the ``weights`` profile): the conditions of the network listed in ``data.stage1_features`` /
   ``data.stage2_features`` (:data:`CONDITIONS`), after the features they read (``READS``, e.g.
   vocals, transcript). The ground-truth targets of the auxiliary losses (sync, face_va,
   action_units) are training-only and skipped. ``--caption`` replaces the captioning model by
   :mod:`pipeline.features.caption_given` (the caption feature's text encoders on the given text).

``DIR`` then holds (paths by :class:`~core.shards.ShardLayout`): ``clips/<NAME>/`` (tar with
``{key}.mp4 .wav .json .landmarks.npy``, manifest, rejects), ``features/<f>/<NAME>/`` (sidecars with
``members.json``), ``splits/generate.jsonl`` (one line: dataset, key, shard, frames, speaker),
``reports/extract/`` and ``prepare.json`` (inputs with sha256, durations, the caption and its
source, the weights profile and whether it is tiny). Exit status 2 (one line naming the file and
the fix) for an unreadable image or audio, no audio stream, audio under 0.5 s, and an image the
face steps reject (no face, several faces, face too small, head turned).

Cost grows linearly with the audio: the face and encode steps see every frame of the still video,
and ``clip_image`` judges every ``features.clip_image.frame_stride``-th frame as in training,
though all frames show the same picture. Every step is cached (``cache.dir``): a second run with the same inputs and
another ``--caption`` text recomputes only the caption (switching between a generated and a given
caption changes the clip record, so the features are recomputed too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from core import cli, params
from core.clip import Clip
from core.hashing import sha256_file
from core.shards import ShardLayout, ShardParams, iter_samples, load_json, read_manifest, write_clip_shards
from core.weights import WeightsParams
from pipeline import extract
from pipeline import features as features_mod
from pipeline.cache import Cache, CacheParams
from pipeline.ingest import IngestSteps
from pipeline.prepare_inputs import MIN_SECONDS, PrepareError, drop_error, read_audio, read_image, still_source
from pipeline.runner import Runner, RunnerParams
from pipeline.stats import write_json
from pipeline.steps.segment import Segment

log = logging.getLogger("pipeline.prepare")

SPLIT = "generate"
#: Features that condition the network (paper 3): wav2vec2 audio states, E = concat(E_t, E_ser, E_va)
#: (eq. 1), the caption's CLIP text states, the reference image's CLIP image embedding.
CONDITIONS = ("audio_embed", "emotion_text", "emotion_speech", "valence_arousal", "caption", "clip_image")
GIVEN_CAPTION = "pipeline.features.caption_given"


def feature_plan(data: dict[str, Any], where: str) -> tuple[list[str], list[str]]:
    """``(features to extract in order, listed features skipped)``: the :data:`CONDITIONS` among
    ``data.stage2_features`` + ``data.stage1_features``, each after the enabled features it reads."""
    section = data.get("data") or {}
    listed: list[str] = []
    for key in ("stage2_features", "stage1_features"):
        value = section.get(key) or []
        if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
            raise params.ParamsError(f"{where}: data.{key} must be a list of feature names, got {value!r}")
        listed += [f for f in value if f not in listed]
    enabled = set(features_mod.enabled(data))
    order: list[str] = []

    def visit(feature: str) -> None:
        raw = params.section(data, f"features.{feature}", where) or {}
        module = features_mod.load_module(feature, raw.get("module", ""))
        params.from_dict(module.Params, raw, f"{where}: features.{feature}")  # a typo names this file, not the derived one
        for read in getattr(module, "READS", ()):
            if read in enabled and read not in order:
                visit(read)
        if feature not in order:
            order.append(feature)

    for feature in listed:
        if feature in CONDITIONS:
            visit(feature)
    return order, [f for f in listed if f not in CONDITIONS]


def extraction_params(data: dict[str, Any], root: Path, out: Path, caption: str | None) -> dict[str, Any]:
    """The params the extract stages run with: the given ones, with the shards under ``out``, the weights and
    the cache where the project keeps them (absolute), in-process, and the given caption if any."""
    eff = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    eff["shards"] = {**(data.get("shards") or {}), "root": str(out.resolve())}
    weights = data.get("weights") or {}
    eff["weights"] = {**weights, "dir": str((root / weights.get("dir", WeightsParams.dir)).resolve())}
    cache = data.get("cache") or {}
    eff["cache"] = {**cache, "dir": str(params.from_dict(CacheParams, cache, "cache").root(root).resolve())}
    eff["runner"] = {**(data.get("runner") or {}), "local": True}
    if caption is not None:
        eff["features"] = dict(data.get("features") or {})
        eff["features"]["caption"] = {**(eff["features"].get("caption") or {}), "module": GIVEN_CAPTION, "text": caption}
    return eff


def ingest_clip(source: Path, source_rel: str, name: str, seconds: float, data: dict[str, Any], where: str,
                cache: Cache, image: Path, audio: Path) -> Clip:
    """The ingest steps on the still source, with one clip covering the whole audio; a drop is a
    :class:`PrepareError` naming the file, the check and the fix."""
    steps_params = params.load(IngestSteps, "steps", where, data)
    fps = steps_params.segment.fps
    min_s = math.floor(MIN_SECONDS * fps) / fps  # whole frames: any audio of MIN_SECONDS or more passes
    whole = dataclasses.replace(steps_params.segment, min_s=min_s, max_s=max(2 * min_s, seconds + 1.0))
    steps = [Segment(whole) if isinstance(s, Segment) else s for s in steps_params.build()]
    runner_params = dataclasses.replace(params.load(RunnerParams, "runner", where, data), local=True)
    item = Clip(key=f"{name}__{source.stem}", dataset=name, source=str(source), source_rel=source_rel,
                source_hash=cache.source_hash(source))
    with Runner(runner_params, cache, stage=f"prepare@{name}") as runner:
        outcomes = runner.chain(steps, [item], desc=f"prepare@{name}")
    for outcome in outcomes:
        for _, drop in outcome.drops:
            raise drop_error(outcome.step, drop, image, audio)
    (clip,) = outcomes[-1].kept
    return clip


def caption_source(data: dict[str, Any], where: str, caption: str | None) -> dict[str, Any]:
    """Where the caption comes from: the user's text, or the backend and model ``features.caption`` configures."""
    if caption is not None:
        return {"source": "user", "backend": "given"}
    raw = params.section(data, "features.caption", where) or {}
    p = params.from_dict(features_mod.load_module("caption", raw.get("module", "")).Params, raw, f"{where}: features.caption")
    return {"source": "generated", "backend": p.backend, "model": p.model}


def check_sidecar(layout: ShardLayout, feature: str, name: str) -> dict[str, Any]:
    """The one sidecar json of ``feature``; a sidecar that is not ``ok`` stops here (exit status 3)."""
    (sample,) = list(iter_samples(layout.feature(feature, name)))
    body = load_json(sample["json"])
    if body.get("status") != "ok":
        raise cli.StageFailed(f"{layout.feature(feature, name)}: the {feature} feature is {body.get('status')} for "
                              f"{sample['__key__']} ({body.get('reason', '')}: {body.get('message', '')}); see "
                              f"{layout.feature(feature, name) / 'rejects.parquet'}")
    return body


def run(image: Path, audio: Path, out: Path, caption: str | None = None, name: str = "generate",
        params_file: Path | None = None, root: Path = Path(".")) -> dict[str, Any]:
    """Prepare ``out`` for generation from ``image`` and ``audio``; returns what ``prepare.json`` holds."""
    t0 = time.perf_counter()
    image, audio, out = Path(image), Path(audio), Path(out)
    data = params.read_yaml(params_file)
    where = str(params_file or params.params_path())
    steps_params = params.load(IngestSteps, "steps", where, data)
    wparams = params.load(WeightsParams, "weights", where, data)
    shard_params = params.load(ShardParams, "shards", where, data)
    cache = Cache(params.load(CacheParams, "cache", where, data).root(root))
    fps, rate = steps_params.encode.fps, steps_params.audio.sample_rate

    pixels = read_image(image)
    seconds = read_audio(audio, rate)
    layout = ShardLayout(out)
    with tempfile.TemporaryDirectory(prefix="prepare-", dir=cache.root if cache.root.is_dir() else None) as tmp:
        source = still_source(pixels, audio, seconds, fps, Path(tmp))
        source_rel = f"{image.stem}__{audio.stem}.mkv"
        clip = ingest_clip(source, source_rel, name, seconds, data, where, cache, image, audio)
        plan, skipped = feature_plan(data, where)  # imports the extractors (torch, transformers): after the input checks
        caption_info = caption_source(data, where, caption) if "caption" in plan else None
        if caption is not None and caption_info is None:
            log.warning("--caption is ignored: no caption feature among data.stage1_features / data.stage2_features")
        inputs = {"image": {"name": image.name, "sha256": sha256_file(image), "size": [int(pixels.shape[1]), int(pixels.shape[0])]},
                  "audio": {"name": audio.name, "sha256": sha256_file(audio), "seconds": round(seconds, 6)}}
        clip = clip.evolve(meta={"source": {"speaker": image.name, **inputs}, "prepare": {"caption": caption_info}})
        write_clip_shards(layout.clips(name), [clip], [], shard_params)
    row = read_manifest(layout.clips(name)).to_pylist()[0]
    log.info("prepare: %s, %d frames (%.2f s of %.2f s audio) in %s", clip.key, row["frames"], row["frames"] / fps, seconds,
             layout.clips(name))

    eff_params = out / ".prepare-params.yaml"
    eff_params.write_text(yaml.safe_dump(extraction_params(data, root, out, caption), sort_keys=False))
    reports, bodies = {}, {}
    try:
        for feature in plan:
            reports[feature] = extract.run(feature, name, root=out, local=True, params_file=eff_params)
            if not reports[feature].get("disabled"):
                bodies[feature] = check_sidecar(layout, feature, name)
    finally:
        eff_params.unlink(missing_ok=True)
    disabled = [f for f, r in reports.items() if r.get("disabled")]
    for feature in disabled:
        log.warning("features.%s is disabled: its sidecar says so, and generation gets no %s condition", feature, feature)

    text = (bodies.get("caption") or {}).get("values", {}).get("caption")
    if caption_info:
        log.info("caption (%s, %s): %s", caption_info["source"], caption_info["backend"] +
                 (f" {caption_info['model']}" if caption_info.get("model") else ""), text)
    entry = {"dataset": name, "key": row["key"], "shard": row["shard"], "frames": int(row["frames"]), "speaker": row["speaker"]}
    split = layout.split(SPLIT)
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text(json.dumps(entry, sort_keys=True) + "\n")  # select's line format
    tiny = any(bool(r.get("tiny_weights")) for r in reports.values())
    summary = {
        "dataset": name, "split": SPLIT, "key": row["key"], "shard": row["shard"],
        "image": {"path": str(image.resolve()), **inputs["image"]},
        "audio": {"path": str(audio.resolve()), **inputs["audio"]},
        "clip": {"frames": int(row["frames"]), "fps": int(row["fps"]), "seconds": round(row["frames"] / fps, 6),
                 "sample_rate": int(row["sample_rate"]), "size": [int(row["width"]), int(row["height"])]},
        "caption": {"text": text, **caption_info} if caption_info else None,
        "features": plan, "disabled_features": disabled, "skipped_features": skipped,
        "weights": {"profile": wparams.profile, "dir": str((root / wparams.dir).resolve()), "tiny": tiny},
        "params": str(Path(where).resolve()), "seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(out / "prepare.json", summary)
    log.info("prepare: %s ready (%d features%s) in %.1fs", out, len(plan), ", tiny weights" if tiny else "", summary["seconds"])
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.prepare", __doc__)
    ap.add_argument("--image", type=Path, required=True, help="the reference image (png, jpg, ...): one clearly visible face")
    ap.add_argument("--audio", type=Path, required=True, help="the driving audio (wav, mp3, m4a, or a video's first audio stream)")
    ap.add_argument("--caption", default=None, help="the caption, used verbatim (default: generated from the image by features.caption)")
    ap.add_argument("--out", type=Path, required=True, help="the output folder (a shard tree: clips/, features/, splits/)")
    ap.add_argument("--name", default="generate", help="the dataset name inside --out (default: generate)")
    return cli.run(ap, argv, lambda a: run(a.image, a.audio, a.out, caption=a.caption, name=a.name, params_file=a.params),
                   (PrepareError,))


if __name__ == "__main__":
    sys.exit(main())
