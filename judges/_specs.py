"""The weights specs and output layouts of the frame judges (:mod:`judges.sync`, :mod:`judges.face_va`,
:mod:`judges.action_units`), importable without torch.

A pipeline stage's driver only resolves weights folders and declares shard members; the networks load in its
workers. Keeping these specs here, away from the ``nn.Module`` code, lets the ``sync``, ``face_va`` and
``action_units`` extract stages' drivers start without importing torch (about 2.5 CPU-seconds each). Each
judge module re-exports its names (``face_va.SPEC`` is :data:`FACE_VA`); the tiny stand-in generators stay in
the judge modules and are called through :func:`tiny_maker`, which imports the module only when a stand-in
is built.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path

from core.weights import ModelSpec

__all__ = ["ACTION_UNITS", "AUS", "CLASSES", "FACE_VA", "SYNC", "tiny_maker"]


def tiny_maker(module: str, name: str) -> Callable[[Path, int], None]:
    """``judges.<module>.<name>(folder, seed)``, imported when called."""

    def make(folder: Path, seed: int) -> None:
        getattr(import_module(f"judges.{module}"), name)(folder, seed)

    make.__name__ = make.__qualname__ = name
    make.__module__ = f"judges.{module}"
    return make


# -- sync: SyncNet (joonson/syncnet_python) ----------------------------------------------------------
SYNC_FILE = "syncnet_v2.model"
SYNC_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"
SYNC = ModelSpec(
    "syncnet_v2", files=(SYNC_FILE,), make_tiny=tiny_maker("sync", "make_tiny_sync"),
    url=SYNC_URL,  # not on the Hugging Face hub: what joonson/syncnet_python's download_model.sh fetches
    licence="MIT (joonson/syncnet_python LICENSE.md)",
)

# -- face_va: EmoNet 8-class (face-analysis/emonet) --------------------------------------------------
#: emonet's 8-class order (README, demo.py)
CLASSES = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
EMONET_FILE = "emonet_8.pth"
EMONET_REVISION = "49eef301513686d6cfd8304682d3ba7216baf398"
EMONET_SOURCE = f"https://github.com/face-analysis/emonet/raw/{EMONET_REVISION}/pretrained/{EMONET_FILE}"
FACE_VA = ModelSpec(
    "emonet_8", files=(EMONET_FILE,), make_tiny=tiny_maker("face_va", "make_tiny"),
    # Not on the Hugging Face hub (`pipeline.weights fetch` lists it to place by hand): the repository's
    # pretrained/emonet_8.pth at commit EMONET_REVISION; its git blob id (sha1, not sha256) is in judges.face_va's docstring.
    url=EMONET_SOURCE,
    licence="CC-BY-NC-ND-4.0",
)

# -- action_units: LibreFace AU detector (ihp-lab/LibreFace) ------------------------------------------
#: LibreFace's BP4D AU order (solver_inference_image.py)
AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
LIBREFACE_FILE = "resnet.pt"
LIBREFACE_REVISION = "2195c54f35c5e3709de0300f26f3ca42a48e849b"
LIBREFACE_GDRIVE_ID = "17v_vxQ09upLG3Yh0Zlx12rpblP7uoA8x"
LIBREFACE_SOURCE = (f"https://github.com/ihp-lab/LibreFace/raw/{LIBREFACE_REVISION}/AU_Detection/fm_distillation_all/BP4D/all/"
                    f"{LIBREFACE_FILE}")
ACTION_UNITS = ModelSpec(
    "libreface_au_bp4d_resnet18", files=(LIBREFACE_FILE,), make_tiny=tiny_maker("action_units", "make_tiny"),
    # Not on the Hugging Face hub (`pipeline.weights fetch` lists it to place by hand): the repository's file at
    # commit LIBREFACE_REVISION (also https://drive.google.com/uc?id=LIBREFACE_GDRIVE_ID, what libreface <= 0.1.x downloads).
    url=LIBREFACE_SOURCE,
    licence="USC-Research-License (LibreFace: education, research and non-profit use)",
)
