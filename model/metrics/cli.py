"""``python -m model.metrics``: the paper's metrics for any talking-face method's videos.

    python -m model.metrics --pred GEN_DIR_OR_MP4 --target GT_DIR_OR_MP4 [--metrics psnr,ssim,...]
        [--json OUT.json] [--weights weights/paper] [--size 512] [--landmarks DIR] [--pred-landmarks DIR]
        [--device cpu] [--fvd-stride 16]

Videos pair by file name; both are resampled to 25 fps, truncated to the shorter, resized to
``--size`` square (:mod:`model.metrics.video`). Each metric's judge loads from
``--weights/<judge folder>``; a metric whose judge folder is missing or unloadable, or whose inputs
are missing (face landmarks for E-FID, AU F1, CCC and Sync: ``--landmarks DIR`` of
``<name>.landmarks.npy``; audio for Sync), is reported as ``unavailable: <reason>``, never as a
number. Numbers from tiny stand-in weights are labelled tiny. Prints a table; ``--json`` writes the
numbers, the per-video values, the counts and every protocol choice.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import media
from core.weights import WeightsError, is_tiny
from model.metrics import video as vid
from model.metrics._faces import paired_landmarks
from model.metrics.streaming import as_float_frames

log = logging.getLogger("model.metrics")

#: metric -> (judge module name in ``judges`` or None, needs landmarks, output keys)
METRICS: dict[str, tuple[str | None, bool, tuple[str, ...]]] = {
    "psnr": (None, False, ("psnr",)),
    "ssim": (None, False, ("ssim",)),
    "lpips": ("lpips", False, ("lpips",)),
    "fid": ("inception", False, ("fid",)),
    "fvd": ("i3d", False, ("fvd",)),
    "efid": ("face_3d", True, ("efid",)),
    "au_f1": ("action_units", True, ("au_f1",)),
    "sync": ("sync", True, ("sync_conf", "sync_dist", "sync_offset")),
    "ccc": ("face_va", True, ("ccc_v", "ccc_a")),
}
ALIASES = {"ccc_v": "ccc", "ccc_a": "ccc", "e-fid": "efid", "e_fid": "efid", "aus": "au_f1", "au": "au_f1",
           "lse-c": "sync", "lse_c": "sync", "sync_conf": "sync"}
CHUNK = 16  # frames per update (bounds the float copies)


def _judge_module(name: str):
    from judges import action_units, face_3d, face_va, i3d, inception, lpips, sync

    return {"lpips": lpips, "inception": inception, "i3d": i3d, "face_3d": face_3d, "action_units": action_units,
            "sync": sync, "face_va": face_va}[name]


def parse_metrics(text: str | None) -> list[str]:
    if not text or text.strip() == "all":
        return list(METRICS)
    out = []
    for raw in text.split(","):
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in METRICS:
            raise ValueError(f"unknown metric {raw!r}: choose from {', '.join(METRICS)}")
        if name not in out:
            out.append(name)
    return out


def protocols(metrics: list[str], size: int, fvd_stride: int) -> dict:
    from model.metrics import au_f1, ccc, efid, fid, fvd, lpips, psnr, ssim, sync

    table = {"psnr": psnr.protocol, "ssim": ssim.protocol, "lpips": lpips.protocol, "fid": fid.protocol,
             "fvd": lambda: fvd.protocol(fvd_stride), "efid": efid.protocol, "au_f1": au_f1.protocol,
             "sync": sync.protocol, "ccc": ccc.protocol}
    return {"alignment": vid.protocol(size), **{m: table[m]() for m in metrics}}


def _load_judges(metrics: list[str], weights: Path, device: str, landmarks: Path | None) -> tuple[dict, dict, list[str], dict]:
    """``(judges, unavailable, tiny, folders)``: loaded judges by metric, reasons for the rest, metrics on
    stand-ins, the folder each judge was loaded from."""
    judges, unavailable, tiny, folders = {}, {}, [], {}
    for m in metrics:
        name, needs_landmarks, _ = METRICS[m]
        if needs_landmarks and landmarks is None:
            unavailable[m] = ("needs face landmarks: pass --landmarks DIR holding <name>.landmarks.npy (478-point MediaPipe "
                              "tracks as ingest writes them); this package does not run MediaPipe")
            continue
        if name is None:
            continue
        mod = _judge_module(name)
        folder = Path(weights) / mod.SPEC.name
        try:
            judges[m] = mod.load(folder, device)
        except WeightsError as e:
            unavailable[m] = f"judge '{mod.SPEC.name}' missing: {e}"
            continue
        except Exception as e:  # noqa: BLE001 - a folder that exists but does not load is reported, not fatal
            unavailable[m] = f"judge '{mod.SPEC.name}' failed to load from {folder}: {type(e).__name__}: {e}"
            continue
        folders[m] = str(folder)
        if is_tiny(folder):
            tiny.append(m)
    return judges, unavailable, tiny, folders


def _streams(metrics: list[str], judges: dict, fvd_stride: int) -> dict:
    from model.metrics import au_f1, ccc, efid, fid, fvd, lpips, psnr, ssim, sync

    make = {"psnr": lambda: psnr.PSNR(), "ssim": lambda: ssim.SSIM(), "lpips": lambda: lpips.LPIPS(judges["lpips"]),
            "fid": lambda: fid.FID(judges["fid"]), "fvd": lambda: fvd.FVD(judges["fvd"], stride=fvd_stride),
            "efid": lambda: efid.EFID(judges["efid"]), "au_f1": lambda: au_f1.AUF1(judges["au_f1"]),
            "sync": lambda: sync.Sync(judges["sync"]), "ccc": lambda: ccc.CCC(judges["ccc"])}
    return {m: make[m]() for m in metrics if m in ("psnr", "ssim") or m in judges}


def _landmarks(folder: Path | None, name: str) -> np.ndarray | None:
    if folder is None:
        return None
    path = Path(folder) / f"{name}.landmarks.npy"
    return np.load(path) if path.is_file() else None


def evaluate(pred: Path, target: Path, metrics: list[str] | None = None, weights: Path = Path("weights/paper"),
             size: int = 512, landmarks: Path | None = None, pred_landmarks: Path | None = None, device: str = "cpu",
             fvd_stride: int = 16) -> dict:
    """The report (see :func:`main`) of the paired videos under ``pred`` and ``target``."""
    metrics = list(METRICS) if metrics is None else metrics
    part = collect(pred, target, metrics, weights, size, landmarks, pred_landmarks, device, fvd_stride)
    return finalize(part, metrics, pred, target, weights, size, device, fvd_stride)


@dataclass
class Partial:
    """What :func:`collect` gathered over some pairs: the streams (their sums, :meth:`states`), per-video rows,
    counts; partials of several ranks merge (:meth:`merge`) before :func:`finalize`."""

    streams: dict
    per_video: dict
    counts: dict
    missing_landmarks: list
    missing_audio: list
    unavailable: dict
    tiny: list
    folders: dict
    pairs: list
    pred_only: list
    target_only: list

    def portable(self) -> dict:
        """Everything but the judges (what a rank sends to the main one)."""
        out = {k: v for k, v in self.__dict__.items() if k != "streams"}
        out["states"] = {m: {k: t.cpu() for k, t in s.state().items()} for m, s in self.streams.items()}
        return out

    def merge(self, others: list[dict]) -> "Partial":
        """Add other ranks' :meth:`portable` parts into this one."""
        for o in others:
            for m, state in o["states"].items():
                if m in self.streams:
                    self.streams[m].merge([state])
            self.per_video.update(o["per_video"])
            for k, v in o["counts"].items():
                self.counts[k] = self.counts.get(k, 0) + v
            for name in ("missing_landmarks", "missing_audio", "pairs", "pred_only", "target_only"):
                getattr(self, name).extend(o[name])
        return self


def collect(pred: Path, target: Path, metrics: list[str], weights: Path = Path("weights/paper"), size: int = 512,
            landmarks: Path | None = None, pred_landmarks: Path | None = None, device: str = "cpu", fvd_stride: int = 16,
            names: set[str] | None = None, skip_target: set[str] | frozenset[str] = frozenset(),
            judges: tuple | None = None) -> Partial:
    """Update every metric's stream over the pairs (only ``names`` when given). ``skip_target``: ``fid``/``fvd``
    whose ground-truth side is cached (:func:`reference_states`; add it with :func:`use_reference` once, after
    the ranks' partials are merged): those streams see the generated side only. ``judges``: what
    :func:`load_judges` returned (loaded once for several calls)."""
    from model.metrics import fvd as fvd_mod

    media.require_ffmpeg()
    pairs, pred_only, target_only = vid.pair_videos(Path(pred), Path(target))
    if names is not None:
        pairs = [p for p in pairs if p[0] in names]
        pred_only, target_only = [n for n in pred_only if n in names], [n for n in target_only if n in names]
    elif not pairs:
        raise FileNotFoundError(f"no video of {pred} pairs by name with one of {target} "
                                f"(generated only: {pred_only[:5]}, ground truth only: {target_only[:5]})")
    for name in pred_only + target_only:
        log.warning("%s has no counterpart: skipped", name)
    judges, unavailable, tiny, folders = judges if judges is not None else _load_judges(metrics, weights, device, landmarks)
    unavailable = dict(unavailable)
    streams = _streams(metrics, judges, fvd_stride)
    cached = set(skip_target) & {"fid", "fvd"}
    per_video: dict[str, dict] = {}
    counts = {"videos": 0, "frames": 0, "fvd_clips": 0, "face_videos": 0, "face_frames": 0}
    missing_landmarks, missing_audio = [], []
    for name, p_path, t_path in pairs:
        p_info, t_info = vid.probe(p_path), vid.probe(t_path)
        for info in (p_info, t_info):
            if info.width != info.height:
                log.warning("%s is %dx%d: resized to %dx%d without keeping the aspect ratio", info.path, info.width, info.height, size, size)
        p_frames, t_frames = vid.decode(p_path, size), vid.decode(t_path, size)
        n = min(len(p_frames), len(t_frames))
        row: dict = {"frames": n, "pred_frames": len(p_frames), "target_frames": len(t_frames)}
        per_video[name] = row
        if n == 0:
            log.warning("%s: no frames to compare", name)
            continue
        p_frames, t_frames = p_frames[:n], t_frames[:n]
        counts["videos"] += 1
        counts["frames"] += n
        pixel = {m: type(streams[m])(*([streams[m].judge] if m == "lpips" else [])) for m in ("psnr", "ssim", "lpips") if m in streams}
        for s in range(0, n, CHUNK):
            # one float copy of the chunk on the device, shared by the pixel metrics and FID
            p_chunk = as_float_frames(torch.from_numpy(p_frames[s:s + CHUNK]).to(device))
            t_chunk = as_float_frames(torch.from_numpy(t_frames[s:s + CHUNK]).to(device))
            for one in pixel.values():
                one.update(p_chunk, t_chunk)
            if "fid" in streams:
                streams["fid"].update(p_chunk, None if "fid" in cached else t_chunk)
        for m, one in pixel.items():  # per video, then into the totals (the same sums a rank would send)
            row[m] = one.compute()
            streams[m].merge([one.state()])
        if "fvd" in streams:
            before = streams["fvd"].count("pred")
            streams["fvd"].update(p_frames, None if "fvd" in cached else t_frames)
            counts["fvd_clips"] += streams["fvd"].count("pred") - before
            if n < fvd_mod.LENGTH:
                log.warning("%s: %d frames, shorter than an FVD clip (%d): no FVD sample", name, n, fvd_mod.LENGTH)
        face = [m for m in ("efid", "au_f1", "ccc", "sync") if m in streams]
        if not face:
            continue
        track = _landmarks(landmarks, name)
        if track is None:
            missing_landmarks.append(name)
            continue
        t_lm = vid.align_landmarks(track, n, t_info.fps, t_info.width, t_info.height, size)
        p_track = _landmarks(pred_landmarks, name)
        p_lm = None if p_track is None else vid.align_landmarks(p_track, n, p_info.fps, p_info.width, p_info.height, size)
        counts["face_videos"] += 1
        counts["face_frames"] += int(paired_landmarks(n, t_lm, p_lm)[2].sum())
        for m in ("efid", "au_f1", "ccc"):
            if m in streams:
                streams[m].update(p_frames, t_frames, t_lm, p_lm)
        if "sync" in streams:
            src = p_path if p_info.has_audio else t_path if t_info.has_audio else None
            if src is None:
                missing_audio.append(name)
            else:
                from model.metrics import sync as sync_mod

                one = sync_mod.Sync(streams["sync"].judge)
                one.update(p_frames, t_frames, landmarks=t_lm, audio=vid.decode_audio(src), pred_landmarks=p_lm)
                res = one.compute()
                row.update({k: v for k, v in res.items() if k.startswith("sync_")})
                streams["sync"].merge([one.state()])
    return Partial(streams, per_video, counts, missing_landmarks, missing_audio, unavailable, tiny, folders,
                   [name for name, _, _ in pairs], pred_only, target_only)


load_judges = _load_judges


def use_reference(part: Partial, target_stats: dict[str, dict]) -> Partial:
    """Add the cached ground-truth sums of ``fid``/``fvd`` to a (merged) partial whose streams skipped them."""
    for m, stats in target_stats.items():
        if m in part.streams:
            state = part.streams[m].state()
            state.update({k: torch.as_tensor(v) for k, v in stats.items() if k.startswith("target_")})
            part.streams[m].load_state(state)
    return part


def reference_states(target: Path, metrics: list[str], weights: Path, size: int = 512, device: str = "cpu",
                     fvd_stride: int = 16) -> dict[str, dict]:
    """Ground-truth sums of FID and FVD over every video under ``target`` (the cached reference statistics
    of a test set): ``{metric: {target_sum, target_outer, target_count}}``."""
    judges, _, _, _ = _load_judges([m for m in metrics if m in ("fid", "fvd")], weights, device, None)
    streams = _streams(list(judges), judges, fvd_stride)
    for path in sorted(vid.list_videos(Path(target)).values()):
        frames = vid.decode(path, size)
        if "fid" in streams:
            for s in range(0, len(frames), CHUNK):
                streams["fid"].update(None, as_float_frames(torch.from_numpy(frames[s:s + CHUNK]).to(device)))
        if "fvd" in streams:
            streams["fvd"].update(None, frames)
    return {m: {k: v.cpu() for k, v in s.state().items() if k.startswith("target_")} for m, s in streams.items()}


def finalize(part: Partial, metrics: list[str], pred: Path, target: Path, weights: Path, size: int, device: str,
             fvd_stride: int) -> dict:
    """The report of the (merged) partial."""
    streams, counts, unavailable, tiny, folders = part.streams, part.counts, dict(part.unavailable), part.tiny, part.folders
    missing_landmarks, missing_audio, per_video = part.missing_landmarks, part.missing_audio, part.per_video
    pairs = part.pairs
    results: dict[str, float] = {}
    extra: dict[str, dict] = {}
    for m, stream in streams.items():
        value = stream.compute()
        if isinstance(value, dict):
            extra[m] = value
            keys = METRICS[m][2]
            vals = {k: value.get(k, float("nan")) for k in keys}
        else:
            vals = {METRICS[m][2][0]: value}
        if all(isinstance(v, float) and math.isnan(v) for v in vals.values()):
            unavailable[m] = _why_nan(m, stream, counts, missing_landmarks, missing_audio, len(pairs))
            continue
        results.update({k: float(v) for k, v in vals.items()})
        if m == "sync" and "sync_conf_gt" in value:
            results.update({k: float(value[k]) for k in ("sync_conf_gt", "sync_dist_gt", "sync_offset_gt")})
    counts["fid_frames"] = counts["frames"] if "fid" in streams else 0
    return {
        "pred": str(pred), "target": str(target), "size": size, "fps": vid.FPS, "weights": str(weights), "device": device,
        "metrics": results,
        "unavailable": {m: unavailable[m] for m in metrics if m in unavailable},
        "tiny": [m for m in tiny if m in streams], "judge_folders": {m: f for m, f in folders.items() if m in streams},
        "pairs": pairs,
        "unpaired": {"pred_only": part.pred_only, "target_only": part.target_only},
        "missing_landmarks": missing_landmarks, "missing_audio": missing_audio,
        "counts": counts, "details": extra, "per_video": per_video,
        "protocol": protocols(metrics, size, fvd_stride),
    }


def _why_nan(m: str, stream, counts: dict, missing_landmarks: list, missing_audio: list, pairs: int) -> str:
    if m in ("fid", "fvd", "efid"):
        what = {"fid": "frames", "fvd": "16-frame clips", "efid": "frames with landmarks"}[m]
        return f"fewer than 2 {what} per side (a covariance needs 2): got {stream.count('pred')}"
    if METRICS[m][1] and len(missing_landmarks) == pairs:
        return f"no <name>.landmarks.npy for any pair in --landmarks ({', '.join(missing_landmarks[:5])})"
    if m == "sync" and missing_audio:
        return f"no audio track in the generated or ground-truth video ({', '.join(missing_audio[:5])})"
    if m == "sync":
        return "no video long enough for one SyncNet window (6 frames and 0.24 s of audio) with a face"
    if m == "au_f1":
        return "no AU present in any frame of either side (F1 undefined)"
    if m == "ccc":
        return "no frame with landmarks, or constant equal series (CCC undefined)"
    return "no frames to compare"


def reported_keys(metric: str) -> tuple[str, ...]:
    """The report keys of ``metric`` (Sync also reports the ground truth's own values, ``<key>_gt``)."""
    keys = METRICS[metric][2]
    return keys + (tuple(k + "_gt" for k in keys) if metric == "sync" else ())


def format_table(report: dict) -> str:
    rows = [("metric", "value", "note")]
    tiny = set(report["tiny"])
    for m in METRICS:
        if m in report["unavailable"]:
            rows.append((m, "unavailable: " + report["unavailable"][m], ""))
            continue
        for k in reported_keys(m):
            if k in report["metrics"]:
                rows.append((k, f"{report['metrics'][k]:.4f}", "tiny weights (numbers mean nothing)" if m in tiny else ""))
    c = report["counts"]
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]}" + (f"  [{r[2]}]" if r[2] else "") for r in rows]
    lines.append(f"{c['videos']} video pairs, {c['frames']} frames at {report['size']}x{report['size']} {report['fps']} fps"
                 f"; FVD clips {c['fvd_clips']}; face videos {c['face_videos']} ({c['face_frames']} frames with landmarks)")
    return "\n".join(lines)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _clean(o):
    """NaN/inf -> None (JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.metrics", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pred", type=Path, required=True, help="generated video (mp4) or folder of them")
    ap.add_argument("--target", type=Path, required=True, help="ground-truth video or folder (paired by file name)")
    ap.add_argument("--metrics", default="all", help=f"comma-separated: {','.join(METRICS)} (default all)")
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--weights", type=Path, default=Path("weights/paper"), help="folder of judge folders (weights/<profile>)")
    ap.add_argument("--size", type=int, default=512, help="frames are resized to SIZE x SIZE (default 512)")
    ap.add_argument("--landmarks", type=Path, default=None, help="folder of <name>.landmarks.npy of the ground-truth videos")
    ap.add_argument("--pred-landmarks", type=Path, default=None, help="folder of <name>.landmarks.npy of the generated videos")
    ap.add_argument("--device", default="cpu", help="torch device of the judges (cpu, cuda, cuda:1 ...)")
    ap.add_argument("--fvd-stride", type=int, default=16, help="frames between FVD clip starts (16: non-overlapping)")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings only on stderr")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        metrics = parse_metrics(args.metrics)
        report = evaluate(args.pred, args.target, metrics, args.weights, args.size, args.landmarks, args.pred_landmarks,
                          args.device, args.fvd_stride)
    except (FileNotFoundError, ValueError, media.MediaError) as e:
        log.error("%s", e)
        return 2
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_clean(report), indent=2, default=_json_default, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
