"""Maps a step over clips: in-process, in local worker processes, or on Ray (DESIGN 4).

Only ``ray_backend.py`` imports Ray. Everything above the runner (stages) and below it (steps) is
plain Python. The package, along its seams:

* ``params.py``: :class:`RunnerParams` (the ``runner`` section of params.yaml);
* ``runner.py``: :class:`Runner`, the facade (mode, resources, ``map``/``chain``, lifecycle);
* ``schedule.py``: :class:`ChainRun`, what waits at which step, and :class:`StepOutcome`;
* ``execute.py``: one batch in a worker (:func:`execute_batch`, set-up once, :class:`Worker`)
  and the in-process backend;
* ``processes.py`` and ``ray_backend.py``: the two worker backends.

Backends (``runner.backend``; ``runner.local: true`` or ``--local`` forces in-process):

* ``processes``: long-lived local worker processes (spawned, one per ``num_cpus / step cpus``,
  GPUs shared out by ``CUDA_VISIBLE_DEVICES`` when a step asks for them). Starts in well under a
  second; this is what a single machine wants.
* ``ray``: long-lived Ray actors, on the cluster at ``runner.address`` / ``$RAY_ADDRESS``, or on a
  local Ray started for the stage. Starting and stopping a local Ray costs 7-17 s per stage
  process on a 2-core machine (bench/README.md), more than a plain ffmpeg transcode of a small
  dataset, so a local Ray pays only for multi-node work or Ray's GPU packing.
* ``auto`` (default): ``ray`` when a cluster address is set, ``processes`` otherwise.

For each ``map(step, clips)``, and for ``chain(steps, clips)``, which streams every clip through
several steps with no barrier between them (ingest uses it):

1. every clip's cache key is computed and looked up in the driver: hits never reach a worker,
   so a fully cached stage starts no worker at all;
2. misses go to a pool of long-lived workers sized from the step's ``resources`` (``setup()``
   runs once per worker; batched steps get up to ``batch_size`` clips per call; one batch in
   flight per worker, so a crash is charged to the batch that caused it);
3. a worker writes each result straight into the cache (atomic rename), so a killed run resumes;
4. an exception on a clip becomes ``Drop("error:<Type>")`` (cached like any reject; set
   ``runner.retry_errors`` to recompute those); a worker process that dies (segfault, OOM kill)
   is restarted and its batch re-run up to ``max_retries`` times; then its clips are dropped as
   ``error:WorkerCrashed`` (not cached; crashes and retries are logged and counted in the
   outcome); an exception in ``setup()`` is a configuration error and stops the stage;
5. a storage failure (full disk, I/O error, broken pipe, permission: ``core.storage``) is never a
   reject: it stops the stage with a :class:`~core.storage.StorageError` naming the path; every
   ffmpeg/ffprobe call in a worker is killed after ``media_timeout_s`` and a batch running longer than
   ``task_timeout_s`` has its worker killed (``processes``: counted from when its worker begins it, so
   ``setup()`` counts, a worker's own start does not; ``ray``: from its submission to the actor, which is
   killed without restart and replaced): both are ``error:Timeout`` rejects.
"""

from pipeline.runner.execute import StepSetupError, Worker, describe_exception, execute_batch
from pipeline.runner.params import RunnerParams
from pipeline.runner.ray_backend import FORWARDED_ENV, RayBackend, ray_temp_dir
from pipeline.runner.runner import Runner
from pipeline.runner.schedule import StepOutcome

__all__ = [
    "FORWARDED_ENV",
    "RayBackend",
    "Runner",
    "RunnerParams",
    "StepOutcome",
    "StepSetupError",
    "Worker",
    "describe_exception",
    "execute_batch",
    "ray_temp_dir",
]
