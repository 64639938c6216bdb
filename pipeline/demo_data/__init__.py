"""The embedded demo dataset: a deterministic generator (DESIGN 2, "The embedded sample dataset").

``python -m pipeline.demo_data [--out data/sample]`` writes a dozen short talking-face videos and a
``sample.json`` that says what each one is for. Everything is made from material that installed
packages ship, so the demo and the tests need no download:

* the face is scikit-image's astronaut photo, its MediaPipe mesh moved and the photo warped
  triangle by triangle (:mod:`.face_rig`), driven by per-frame tracks (:mod:`.tracks`);
* the voice is synthesised with numpy (:mod:`.voice`); the music bed is a seeded chord
  progression with bass and a drum beat (:mod:`.music`); :mod:`.speakers` pairs looks and voices;
* :mod:`.render` pipes frames and audio into a bit-exact ffmpeg; :mod:`.dataset` plans the clips
  (each on purpose, so that each ingest rule meets a case) and writes the folder atomically.

The output is byte-identical from run to run (and whatever ``--jobs``). There is no module-level
state: the face is detected once per run and passed on in a :class:`.render.Renderer`.
"""
