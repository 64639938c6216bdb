"""``RunnerParams``: the ``runner`` section of params.yaml, and which Ray cluster it names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

#: the variable ``core.media.timeout_s`` reads in a worker (not imported: the runner does not load media code)
MEDIA_TIMEOUT_ENV = "SYNCHRORAMA_MEDIA_TIMEOUT_S"


@dataclass(frozen=True)
class RunnerParams:
    """``runner`` section of params.yaml."""

    backend: Literal["auto", "processes", "ray"] = "auto"  # auto: ray when a cluster address is set, else processes
    address: str | None = None  # join this Ray cluster ("auto", "ray://host:10001"); $RAY_ADDRESS also works
    num_cpus: int | None = None  # CPUs of the local workers / local Ray (default: all cores)
    num_gpus: float | None = None  # GPUs of the local workers / local Ray (default: detected)
    local: bool = False  # run in-process, no worker processes (debugging)
    max_retries: int = 2  # restarts of a crashed worker, and retries of its task
    retry_errors: bool = False  # recompute cached error:<Type> rejects instead of reusing them
    in_flight: int = 1  # tasks queued per actor; >1 hides latency of very short steps, but a crash then also costs the queued task a retry
    object_store_mb: int = 512  # local Ray object store (records are small; media stay on disk)
    temp_dir: str = ".ray"  # Ray session files for a local Ray (relative to the work tree)
    progress: bool = True
    # a stage whose error:* rejects exceed this share of its items exits non-zero (after writing its outputs),
    # so `dvc repro` stops instead of going on with a stage in which (nearly) everything failed
    max_error_fraction: float = 0.5
    # seconds one batch of a step may run in a worker before the worker is killed and its clips rejected as
    # error:Timeout (processes and ray backends; 0: no limit)
    task_timeout_s: float = 3600.0
    # seconds one ffmpeg/ffprobe process may run on a file before it is killed (error:Timeout), every backend
    media_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ValueError(f"max_error_fraction must be within [0, 1], got {self.max_error_fraction}")
        if self.task_timeout_s < 0 or self.media_timeout_s <= 0:
            raise ValueError(f"task_timeout_s must be >= 0 and media_timeout_s > 0, got {self.task_timeout_s} and {self.media_timeout_s}")

    def worker_env(self) -> dict[str, str]:
        """Environment the workers run with (the ffmpeg/ffprobe time limit, read by ``core.media``)."""
        return {MEDIA_TIMEOUT_ENV: f"{self.media_timeout_s:g}"}


def cluster_address(params: RunnerParams) -> str | None:
    """The Ray cluster to join: ``runner.address``, else ``$RAY_ADDRESS``, else none (read at call time)."""
    return params.address or os.environ.get("RAY_ADDRESS") or None
