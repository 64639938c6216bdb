"""The renderer: the face detected once and passed on explicitly; rigs reused; pickles small."""

from __future__ import annotations

import pickle

import numpy as np

from pipeline.demo_data.face_rig import Look
from pipeline.demo_data.render import Renderer
from pipeline.demo_data.speakers import SPEAKERS


def test_renderer_reuses_rigs_and_pickles_as_its_face() -> None:
    renderer = Renderer()
    look = SPEAKERS["spk_b"].look
    rig = renderer.rig(96, look)
    assert renderer.rig(96, look) is rig and renderer.rig(96, Look()) is not rig
    frame = rig.render(0.5, 0.3, 20.0)
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8

    data = pickle.dumps(renderer)
    assert len(data) < 2 * renderer.face.image.nbytes  # the face only, not its rigs
    copy = pickle.loads(data)
    assert copy.rig(96, look) is not rig  # rebuilt where it is unpickled
    assert np.array_equal(copy.rig(96, look).render(0.5, 0.3, 20.0), frame)
