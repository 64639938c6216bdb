"""The trainer end to end on the tiny project: golden 2-step losses per stage, checkpoints and their
layout, frozen parts untouched, resume to the bit, validation, logging, the command line."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from model.train import main, train

from .conftest import write_params

#: total loss of steps 1 and 2 of each stage on the tiny project (CPU, 1 thread; set when the trainer changed on purpose)
GOLDEN = {
    "stage1": [1.1458500623703003, 1.131406545639038],
    "a2m": [0.1267818659543991, 0.10562779009342194],
    "stage2": [1.1145944595336914, 1.1326417922973633],
}


def _weights(folder, component):
    return load_file(str(folder / component / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def runs(project, tmp_path_factory):
    """stage1, a2m, then stage2 (from the stage-1 checkpoint, ground-truth motion; val every step; the emo loss
    asked for without its target in the batch), 2 steps each."""
    out = tmp_path_factory.mktemp("runs")
    params = write_params(project, out, stage2={"init_from": str(out / "checkpoints" / "stage1"), "val_every": 1,
                                                "val_video_frames": 6, "val_video_steps": 2, "aux": {"emo": 0.1, "frames": 4}})
    results = {stage: train(stage, params, max_steps=2, resume="none") for stage in ("stage1", "a2m", "stage2")}
    return out, params, results


@pytest.mark.parametrize("stage", ["stage1", "a2m", "stage2"])
def test_two_steps_give_the_golden_losses(runs, stage):
    assert runs[2][stage].losses == pytest.approx(GOLDEN[stage], rel=1e-5, abs=1e-6)


def test_checkpoints_hold_every_trained_component_and_the_train_state(runs):
    out = runs[0] / "checkpoints"
    for stage, components in (("stage1", ("unet", "reference_net", "image_proj")), ("a2m", ("a2m",)),
                              ("stage2", ("unet", "audio_proj", "emotion_embed"))):
        step = out / stage / "step-2"
        assert step == runs[2][stage].checkpoint
        for c in components:
            assert (step / c / "config.json").is_file() and (step / c / "diffusion_pytorch_model.safetensors").is_file()
        state = torch.load(step / "train_state.pt", weights_only=False)
        assert state["step"] == 2 and {"optimizer", "lr_scheduler", "ema", "scaler"} <= set(state)
        rank = torch.load(step / "rank-0.pt", weights_only=False)
        assert {"python", "numpy", "torch"} <= set(rank["rng"]) and "positions" in rank["data"]["loader"]
        run = json.loads((step / "run.json").read_text())
        assert run["tiny"] is True and run["stage"] == stage and run["packages"]["torch"]
        assert "git" not in run and "resumed_from" not in run  # the execution's, in the run record (same bytes on every clone)
        record = json.loads((runs[0] / "runs" / f"train-{stage}.json").read_text())
        assert record["git"]["commit"] and record["resumed_from"] is None and record["steps_run"] == 2
        assert run["device"]["type"] == "cpu" and run["train"]["batch_size"] == 2
    scheduler = json.loads((out / "stage2" / "step-2" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "epsilon" and scheduler["beta_schedule"] == "scaled_linear"


def test_frozen_parts_are_untouched_and_every_trained_parameter_moves(runs, project):
    from model.builder import build_components, load_params

    out, params = runs[0] / "checkpoints", runs[1]
    fresh = build_components(project / "weights" / "tiny" / "stable-diffusion-v1-5", load_params(params), seed=0)
    added = ("processor.temporal", "processor.audio", "processor.emotion")
    unused = set(fresh.reference_net.unused_parameter_names())
    s1_unet, s1_ref = _weights(out / "stage1" / "step-2", "unet"), _weights(out / "stage1" / "step-2", "reference_net")
    for name, p in fresh.unet.state_dict().items():
        assert torch.equal(s1_unet[name], p) == any(a in name for a in added), name
    for name, p in fresh.reference_net.state_dict().items():
        assert torch.equal(s1_ref[name], p) == (name in unused), name
    # figure 2a's CLIP path: stage 1 trains the zero-initialised image projection, stage 2 keeps it (not saved again)
    s1_proj = _weights(out / "stage1" / "step-2", "image_proj")
    assert not s1_proj["proj.weight"].equal(fresh.image_proj.proj.weight) and not fresh.image_proj.proj.weight.any()
    assert not (out / "stage2" / "step-2" / "image_proj").exists()
    s2_unet = _weights(out / "stage2" / "step-2", "unet")
    for name, p in s1_unet.items():
        assert torch.equal(s2_unet[name], p) != any(a in name for a in added), name
    for component in ("audio_proj", "emotion_embed"):
        for name, p in getattr(fresh, component).state_dict().items():
            assert not torch.equal(_weights(out / "stage2" / "step-2", component)[name], p), (component, name)


def test_metrics_plots_and_validation_are_logged(runs):
    reports = runs[0] / "reports"
    metrics = json.loads((reports / "stage2" / "metrics.json").read_text())
    assert metrics["tiny"] is True and metrics["step"] == 2
    for key in ("total", "diffusion"):
        assert key in metrics["loss"]
    assert metrics["lr"] > 0 and metrics["grad_norm"] > 0
    assert not {"time", "samples_per_s", "memory"} & set(metrics)  # speed is the run record's, not the DVC output's
    speed = json.loads((runs[0] / "runs" / "train-stage2" / "metrics.json").read_text())
    for key in ("data", "forward", "backward", "optimizer", "total"):
        assert speed["time"][key] >= 0
    assert speed["samples_per_s"] > 0 and speed["memory"]["peak_gib"] > 0 and speed["step"] == 2
    means = json.loads((runs[0] / "runs" / "train-stage2.json").read_text())["step_means"]
    assert means["time/total"] > 0 and means["samples_per_s"] > 0
    assert all(metrics[f"aux/{n}_on"] == 0 for n in ("sync", "emo", "au", "attr_action"))
    assert runs[2]["stage2"].aux["emo"] == "off: the batch has no 'face_va' (add the feature that fills it to data.stage2_features)"
    run = json.loads((runs[0] / "checkpoints" / "stage2" / "run.json").read_text())
    assert run["aux"]["emo"].startswith("off: ") and run["aux"]["sync"] == "off: weight 0"
    rows = (reports / "stage2" / "plots" / "metrics" / "val" / "loss.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss" and len(rows) == 3
    assert (reports / "a2m" / "plots" / "metrics" / "loss" / "kl.tsv").is_file()
    # a validation video per validation, through the inference code, with the clip's audio (the golden losses above
    # prove it leaves the training's random streams alone)
    videos = sorted((runs[0] / "checkpoints" / "stage2" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["step-1.mp4", "step-2.mp4"]
    from model.metrics.video import decode, probe

    assert len(decode(videos[0], 32)) == 6 and probe(videos[0]).has_audio


def _resume_case(project, tmp_path, stage, common, extra=None):
    kw = {"stage2": {"init_from": str(tmp_path / "pre" / "checkpoints" / "stage1")}} if stage == "stage2" else {}
    if stage == "stage2":
        train("stage1", write_params(project, tmp_path / "pre"), max_steps=1, resume="none")
    full = write_params(project, tmp_path / "full", common=common, **kw)
    split = write_params(project, tmp_path / "split", common=common, **kw)
    a = train(stage, full, max_steps=4, resume="none")
    b1 = train(stage, split, max_steps=2, resume="none")
    b2 = train(stage, split, max_steps=4, resume="auto")
    return a, b1, b2


@pytest.mark.parametrize("stage, common", [("stage1", {"num_workers": 2, "batch_size": 1}),
                                           ("stage2", {"ema": True, "ema_decay": 0.9, "warmup_steps": 3, "lr_schedule": "cosine"}),
                                           ("a2m", {"kl_anneal_steps": 3, "grad_accum": 2, "batch_size": 1})])
def test_a_stopped_and_resumed_run_repeats_the_uninterrupted_one_to_the_bit(project, tmp_path, stage, common):
    full, first, second = _resume_case(project, tmp_path, stage, {"checkpoint_every": 2, **common})
    assert second.start == 2 and first.losses + second.losses == full.losses  # bitwise: CPU ops are deterministic
    names = {"stage1": ("unet", "reference_net", "image_proj"), "stage2": ("unet", "audio_proj", "emotion_embed"), "a2m": ("a2m",)}[stage]
    for c in names:
        a, b = _weights(full.checkpoint, c), _weights(second.checkpoint, c)
        assert all(torch.equal(a[k], b[k]) for k in a), c
        if common.get("ema"):
            a, b = _weights(full.checkpoint / "ema", c), _weights(second.checkpoint / "ema", c)
            assert all(torch.equal(a[k], b[k]) for k in a), c
    rows = (tmp_path / "split" / "reports" / stage / "plots" / "metrics" / "loss" / "total.tsv").read_text().splitlines()
    assert [float(r.split("\t")[1]) for r in rows[1:]] == pytest.approx(full.losses, rel=1e-6)


def test_keep_last_and_explicit_resume(project, tmp_path):
    params = write_params(project, tmp_path, common={"checkpoint_every": 1, "keep_last": 2, "batch_size": 1})
    train("a2m", params, max_steps=3, resume="none")
    root = tmp_path / "checkpoints" / "a2m"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["step-2", "step-3"]
    again = train("a2m", params, max_steps=3, resume=str(root / "step-2"))
    assert again.start == 2 and again.step == 3


def test_gradient_checkpointing_changes_nothing(project, tmp_path):
    a = train("stage1", write_params(project, tmp_path / "a", common={"batch_size": 1}), max_steps=2, resume="none")
    b = train("stage1", write_params(project, tmp_path / "b", common={"batch_size": 1, "gradient_checkpointing": True}),
              max_steps=2, resume="none")
    assert a.losses == b.losses
    for c in ("unet", "reference_net"):
        wa, wb = _weights(a.checkpoint, c), _weights(b.checkpoint, c)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_command_line_and_its_exit_codes(project, tmp_path, caplog):
    params = write_params(project, tmp_path, common={"batch_size": 1})
    assert main(["a2m", "--params", str(params), "--max-steps", "1", "--resume", "none"]) == 0
    assert (tmp_path / "checkpoints" / "a2m" / "step-1" / "a2m" / "config.json").is_file()
    bad = write_params(project, tmp_path / "bad", common={"batch_size": 1, "learning_rate": 1})
    caplog.set_level(logging.ERROR)
    assert main(["a2m", "--params", str(bad), "--max-steps", "1"]) == 2
    assert "train.common: unknown key 'learning_rate'" in caplog.text
    missing = write_params(project, tmp_path / "missing", stage2={"init_from": str(tmp_path / "nowhere")})
    assert main(["stage2", "--params", str(missing), "--max-steps", "1"]) == 2
    assert "no checkpoint in" in caplog.text


def test_a_checkpoint_of_other_model_sizes_is_refused_by_name(runs, project, tmp_path, caplog):
    import yaml

    params = yaml.safe_load(runs[1].read_text())
    params["model"]["unet"]["audio_dim"] = params["model"]["audio_proj"]["output_dim"] = 16
    params["train"]["common"]["out_dir"] = str(tmp_path / "checkpoints")
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(params))
    caplog.set_level(logging.ERROR)
    assert main(["stage2", "--params", str(other), "--max-steps", "1", "--resume", "none"]) == 2
    assert "was saved with other settings of audio_dim" in caplog.text


def test_stage2_on_the_a2ms_motion_frames_and_the_first_clip_case(runs, project, tmp_path):
    ckpt = runs[0] / "checkpoints"
    params = write_params(project, tmp_path, common={"batch_size": 2},
                          stage2={"init_from": str(ckpt / "stage1"), "a2m_from": str(ckpt / "a2m"), "motion_source": "mix",
                                  "a2m_probability": 0.5, "first_clip_probability": 0.5})
    result = train("stage2", params, max_steps=2, resume="none")
    assert len(result.losses) == 2 and all(0 < x < 10 for x in result.losses)
    assert result.losses != runs[2]["stage2"].losses  # other motion frames than the ground truth's
