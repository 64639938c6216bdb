"""The dataset card of an export (``DIR/README.md``) and the per-split summary it is rendered from.

:func:`split_summary` gathers one exported split's facts (``DIR/<split>.json``): per dataset the
adapter, clips, hours, distinct sources and speakers; the shards with their sizes; every member
name a sample carries with its declaration (``core.members.CLIP_MEMBERS`` and each feature's
``members.json``); the models behind the data with their licences (MediaPipe for the ingest face
crop and landmarks, each exported feature's ``WEIGHTS`` specs, labelled tiny when the sidecar was
computed with stand-in weights). :func:`write_card` renders the card from every ``<split>.json`` in
``DIR`` (sorted; no dates), with how to load the shards with plain ``webdataset`` and with Hugging
Face ``datasets``. Same inputs, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.members import CLIP_MEMBERS
from core.shards import ShardLayout

MEDIAPIPE = {"name": "mediapipe face detection + face mesh (478 landmarks)", "source": "bundled in the mediapipe wheel",
             "licence": "Apache-2.0", "used_for": "ingest: face count, landmarks, head pose, the 512x512 face crop"}


def models(data: dict[str, Any], features: list[str], layout: ShardLayout, datasets: list[str]) -> list[dict[str, Any]]:
    """The models behind the exported members: ingest's face models and each feature's weights."""
    from pipeline.select import tiny_features
    from pipeline.weights import configured_specs

    out = []
    face = ((data.get("steps") or {}).get("face") or {})
    if face.get("enabled", True):
        out.append(dict(MEDIAPIPE))
    tiny = {f for ds in datasets for f in tiny_features(layout, ds, features)}
    for f in features:
        entry = (data.get("features") or {}).get(f) or {}
        specs = configured_specs({"weights": {"backbone": False, "judges": False}, "features": {f: entry}})
        if not specs:
            out.append({"name": f"(bundled with the {f} feature's package)", "source": "see pipeline/features/" + f + ".py",
                        "licence": "see the package", "used_for": f"feature {f}"})
        for spec in specs:
            source = f"hub {spec.repo_id}@{spec.revision or 'main'}" if spec.repo_id else (spec.url or "bundled")
            out.append({"name": spec.name, "source": source, "licence": spec.licence or "see its source",
                        "used_for": f"feature {f}" + (" (computed with tiny stand-in weights: not meaningful)" if f in tiny else "")})
    return out


def split_summary(split: str, rows: list[dict[str, Any]], features: list[str], member_names: list[str],
                  shards: list[dict[str, Any]], per_dataset: dict[str, dict[str, Any]], declared: dict[str, list[dict[str, Any]]],
                  layout: ShardLayout, data: dict[str, Any]) -> dict[str, Any]:
    entries = data.get("datasets") or {}
    datasets = sorted(per_dataset)
    docs = {m.name: m.doc for m in CLIP_MEMBERS}
    docs.update({"json": CLIP_MEMBERS[0].doc})
    for f, members in declared.items():
        docs[f"{f}.json"] = f"the {f} feature's values and provenance (version, params, weights fingerprint, tiny)"
        docs.update({f"{f}.{m['name']}": m.get("doc", "") for m in members})
    speakers = {}
    for ds in datasets:
        speakers[ds] = len({r.get("speaker") for r in rows if r["dataset"] == ds})
    return {
        "split": split,
        "clips": sum(d["clips"] for d in per_dataset.values()),
        "hours": round(sum(d["seconds"] for d in per_dataset.values()) / 3600, 4),
        "speakers": len({r.get("speaker") for r in rows}),
        "datasets": {ds: {"adapter": (entries.get(ds) or {}).get("adapter", "?"), "clips": per_dataset[ds]["clips"],
                          "hours": round(per_dataset[ds]["seconds"] / 3600, 4), "sources": len(per_dataset[ds]["sources"]),
                          "speakers": speakers[ds]} for ds in datasets},
        "features": features,
        "members": {name: docs.get(name, "") for name in member_names},
        "shards": [{k: s[k] for k in ("shard", "samples", "seconds", "bytes")} for s in shards],
        "bytes": sum(s["bytes"] for s in shards),
        "weights_profile": (data.get("weights") or {}).get("profile", "tiny"),
        "models": models(data, features, layout, datasets),
    }


def write_card(folder: Path) -> Path:
    """``folder/README.md`` from every ``<split>.json`` summary in ``folder``."""
    summaries = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))
                 if not p.name.endswith("_stats.json") and p.stem in ("train", "val", "test")]
    lines = ["# SynchroRaMa talking-face clips (WebDataset export)", "",
             "Talking-face clips cut, cropped and annotated by the SynchroRaMa data pipeline: 25 fps face-crop "
             "H.264 video, 16 kHz mono audio, MediaPipe landmarks and the per-clip features below, one sample per "
             "clip in split-named WebDataset tars. The footage keeps the rights and licences of its source datasets; "
             "the models below carry their own licences (several are research-only).", "",
             "## Splits", "", "| split | clips | hours | speakers | shards | bytes |", "|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['split']} | {s['clips']} | {s['hours']:.4f} | {s['speakers']} | {len(s['shards'])} | {s['bytes']} |")
    lines += ["", "## Sources", "", "| split | dataset | adapter | clips | hours | source videos | speakers |", "|---|---|---|---|---|---|---|"]
    for s in summaries:
        for ds, d in sorted(s["datasets"].items()):
            lines.append(f"| {s['split']} | {ds} | {d['adapter']} | {d['clips']} | {d['hours']:.4f} | {d['sources']} | {d['speakers']} |")
    members: dict[str, str] = {}
    for s in summaries:
        members.update(s["members"])
    lines += ["", "## Sample members", "", "Each sample is `<key>.<member>`; a feature's members are prefixed with the feature's name.", "",
              "| member | what it holds |", "|---|---|"]
    lines += [f"| `{name}` | {doc.replace('|', '/')} |" for name, doc in sorted(members.items())]
    lines += ["", "## Models and licences", ""]
    for s in summaries:
        lines += [f"Split {s['split']} (weights profile `{s['weights_profile']}`):", "", "| model | source | licence | used for |", "|---|---|---|---|"]
        lines += [f"| {m['name']} | {m['source']} | {m['licence']} | {m['used_for']} |" for m in s["models"]]
        lines.append("")
    first = summaries[0]["split"] if summaries else "train"
    files = ", ".join(f'"{s["split"]}": "{s["split"]}-*.tar"' for s in summaries) or '"train": "train-*.tar"'
    lines += ["## Loading", "", "With plain `webdataset` (`pip install webdataset`):", "", "```python", "import glob, json, webdataset as wds", "",
              f"ds = wds.WebDataset(sorted(glob.glob(\"{first}-*.tar\")), shardshuffle=False)",
              "for sample in ds:", "    record = json.loads(sample[\"json\"])      # the clip record: source, timing, scores",
              "    mp4, wav = sample[\"mp4\"], sample[\"wav\"]   # bytes; decode with your video/audio reader", "```", "",
              "With Hugging Face `datasets` (`pip install datasets`):", "", "```python", "from datasets import load_dataset", "",
              f"ds = load_dataset(\"webdataset\", data_files={{{files}}}, streaming=True)",
              "```", "", "## Files", "",
              "`<split>-NNNNNN.tar` (the samples), `<split>-NNNNNN_stats.json` (samples, seconds, bytes of each tar), "
              "`<split>.json` (the summary this card is made from). Written by `python -m pipeline.export`.", ""]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
