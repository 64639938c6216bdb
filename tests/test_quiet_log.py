"""Third-party noise is silenced at its source (core.cli), and ``-v`` brings it back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What MediaPipe/TFLite write from C++ to descriptor 2, a progress bar mid-line, a real warning, and a
# child process (a runner worker) writing the same noise through the inherited descriptor.
SCRIPT = r"""
import os, subprocess, sys
from core import cli
cli.configure_logging({verbose}, native=True)
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"ingest@sample:  46%|####  | 6/13 [00:28<00:23]")
os.write(2, b"W0000 00:00:1796028996.015146    3362 inference_feedback_manager.cc:114] Feedback manager requires a model.\n")
subprocess.run([sys.executable, "-c", "import os; os.write(2, b'I0000 00:00:1.5   77 gl_context.cc:357] GL version\\n'); os.write(2, b'child line\\n')"])
import logging; logging.getLogger("pipeline.x").warning("a real warning")
print("os.environ:", os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"))
"""


def run(verbose: int) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", SCRIPT.format(verbose=verbose)], cwd=REPO, env=env, capture_output=True, timeout=60)


def test_native_noise_is_dropped_and_everything_else_passes_in_order():
    proc = run(0)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode() == ("ingest@sample:  46%|####  | 6/13 [00:28<00:23]child line\n"
                                    "WARNING pipeline.x: a real warning\n")
    assert proc.stdout.decode().strip() == "os.environ: 1"  # the weight-loading bars' switch, inherited by workers


def test_verbose_keeps_the_native_lines():
    proc = run(1)
    err = proc.stderr.decode()
    assert "inference_feedback_manager.cc:114" in err and "XNNPACK" in err and "gl_context.cc" in err
    assert proc.stdout.decode().strip() == "os.environ: None"


def test_only_whispers_own_generate_notes_are_dropped():
    import logging

    from pipeline.features.transcript import _whisper_generate_notes

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.generation.utils", logging.WARNING, __file__, 1, msg, None, None)

    assert not _whisper_generate_notes(record("Both `max_new_tokens` (=56) and `max_length`(=64) seem to have been set."))
    assert not _whisper_generate_notes(record("Passing `generation_config` together with generation-related arguments=({'suppress_tokens', "
                                              "'begin_suppress_tokens'}) is deprecated"))
    assert _whisper_generate_notes(record("Setting `pad_token_id` to `eos_token_id`"))  # any other warning still shows
