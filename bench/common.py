"""Shared helpers of the benchmarks: environment, synthetic inputs, params files, timing, results."""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
REAL_VIDEOS = REPO.parent / "shared" / "data" / "real" / "videos"

#: The run environment of every benchmark (offline, fixed thread counts, no telemetry).
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "OMP_NUM_THREADS": "1",
    "DVC_NO_ANALYTICS": "1",
    "PYTHONHASHSEED": "0",
}
for _k, _v in ENV.items():
    os.environ.setdefault(_k, _v)
# Quieter MediaPipe/TFLite start-up while rendering inputs.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def bin_dir() -> Path:
    """The folder of the running interpreter (the project venv): first on PATH for subprocesses."""
    return Path(sys.executable).parent


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ENV)
    env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)  # always a fresh local Ray
    env.pop("SYNCHRORAMA_PARAMS", None)
    env.update(extra)
    return env


# -- inputs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipSpec:
    name: str
    seconds: float
    fps: str = "25"
    sample_rate: int = 44100
    channels: int = 2
    size: int = 384
    speaker: str = "spk_a"
    seed: int = 0


SPEAKERS = ("spk_a", "spk_b", "spk_c")
FPS = ("24", "30", "50", "30000/1001", "25")
RATES = (44100, 48000)


def varied_specs(n: int, seconds: Sequence[float], size: int, prefix: str = "clip", seed: int = 0) -> list[ClipSpec]:
    """``n`` talking clips cycling through frame rates, sample rates, speakers and lengths."""
    out = []
    for i in range(n):
        out.append(ClipSpec(
            name=f"{prefix}_{i:03d}.mp4", seconds=float(seconds[i % len(seconds)]), fps=FPS[i % len(FPS)],
            sample_rate=RATES[i % len(RATES)], size=size, speaker=SPEAKERS[i % len(SPEAKERS)], seed=seed + i,
        ))
    return out


def _render_one(spec: ClipSpec, folder: str) -> dict[str, Any]:
    from pipeline.demo_data.render import render_talking_clip

    return render_talking_clip(Path(folder) / spec.name, spec.seconds, fps=spec.fps, sample_rate=spec.sample_rate,
                               channels=spec.channels, seed=spec.seed, size=spec.size, speaker=spec.speaker)


def render(specs: Sequence[ClipSpec], folder: Path, workers: int | None = None) -> list[dict[str, Any]]:
    """Render talking clips with ``pipeline.demo_data.render.render_talking_clip`` (deterministic; in
    ``workers`` processes, default one per core: input preparation is not measured)."""
    folder.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(specs)))
    if workers == 1:
        return [_render_one(s, str(folder)) for s in specs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(_render_one, specs, [str(folder)] * len(specs)))


def render_copies(specs: Sequence[ClipSpec], n: int, folder: Path, unique_dir: Path) -> list[str]:
    """``n`` source files in ``folder`` made from the renders of ``specs`` (in ``unique_dir``),
    cycling through them: a file and its copies are separate sources to the pipeline (their own
    key, cache entries and work), and copying is much cheaper than rendering."""
    render(specs, unique_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        spec = specs[i % len(specs)]
        name = f"{Path(spec.name).stem}_{i:03d}.mp4"
        shutil.copy2(unique_dir / spec.name, folder / name)
        names.append(name)
    return names


def describe_inputs(folder: Path) -> dict[str, Any]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    seconds = 0.0
    for p in files:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(p)],
                             capture_output=True, text=True)
        try:
            seconds += float(out.stdout.strip())
        except ValueError:
            pass
    return {"files": len(files), "seconds": round(seconds, 2), "bytes": sum(p.stat().st_size for p in files)}


# -- params -----------------------------------------------------------------------------------------
def repo_params() -> dict[str, Any]:
    with open(REPO / "params.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def write_params(tmp: Path, raw_dir: Path, dataset: str = "bench", num_cpus: int | None = 2, local: bool = False,
                 cache_dir: str = "cache", temp_dir: Path | None = None, face: bool | None = None, backend: str = "auto") -> Path:
    """A params.yaml in ``tmp``: the repository's steps/shards sections, one ``folder`` dataset,
    a cache inside ``tmp`` and the runner settings given. ``face`` sets ``steps.face.enabled``
    (``None``: as in the repository's params.yaml)."""
    base = repo_params()
    data: dict[str, Any] = {
        "runner": {
            "backend": backend, "address": None, "num_cpus": num_cpus, "local": local, "max_retries": 2, "progress": False,
            "temp_dir": str(temp_dir or ray_temp(tmp)),
        },
        "cache": {"dir": cache_dir},
        "shards": copy.deepcopy(base.get("shards", {})),
        "datasets": {dataset: {"adapter": "folder", "raw_dir": str(raw_dir)}},
        "steps": copy.deepcopy(base.get("steps", {})),
    }
    if face is not None:
        if "face" in data["steps"]:
            data["steps"]["face"] = {**(data["steps"]["face"] or {}), "enabled": face}
        elif face:
            raise ValueError("params.yaml has no steps.face section: this ingest has no face step")
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def has_face_step() -> bool:
    """Whether the repository's ingest has the face step enabled (``steps.face.enabled``)."""
    face = repo_params().get("steps", {}).get("face")
    return isinstance(face, dict) and bool(face.get("enabled", True))


def ray_temp(tmp: Path) -> Path:
    """A short Ray temp dir (Unix socket paths are limited to ~107 bytes)."""
    return tmp / "ray"


def encode_params() -> dict[str, Any]:
    return dict(repo_params().get("steps", {}).get("encode", {}))


# -- running ----------------------------------------------------------------------------------------
def run_ingest(tmp: Path, params_file: Path, dataset: str = "bench", local: bool = False) -> dict[str, Any]:
    """One ingest in a fresh process (``python -m bench._ingest_child``, which calls
    ``pipeline.ingest.run``) with ``tmp`` as the project root: wall seconds of the whole process,
    the stage report and the Ray phases."""
    cmd = [sys.executable, "-m", "bench._ingest_child", dataset, "--params", str(params_file)]
    if local:
        cmd.append("--local")
    env = child_env(PYTHONPATH=str(REPO))
    with CpuMeter() as meter:
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    wall = meter.result["elapsed_s"]
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    out["cpu"] = meter.result
    return out


def step_summary(report: dict[str, Any]) -> dict[str, Any]:
    """``{step: {"s": seconds, "computed": n, "cached": n}}`` from a stage report."""
    return {k: {"s": v["seconds"], "computed": v["computed"], "cached": v["cached"]} for k, v in report["steps"].items()}


def ray_startup_seconds(num_cpus: int, tmp: Path) -> dict[str, float]:
    """Seconds for ``ray.init`` + a first actor call + ``ray.shutdown``, through the runner's Ray
    backend (``pipeline.runner.ray_backend``) as a stage does it, in a fresh process."""
    code = r"""
import json, sys, time
from pipeline.cache import Cache
from pipeline.runner import RunnerParams
from pipeline.runner.ray_backend import RayBackend, import_ray
from pipeline.steps import Resources
t0 = time.perf_counter()
import_ray()
t1 = time.perf_counter()
backend = RayBackend(RunnerParams(backend="ray", num_cpus=int(sys.argv[1]), object_store_mb=512, temp_dir=sys.argv[2], max_retries=2),
                     Cache(sys.argv[3]))
backend.start()
t2 = time.perf_counter()
actors = backend.pool(Resources(cpus=1), int(sys.argv[1]))
backend.ping(actors)
t3 = time.perf_counter()
backend.close()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "actors_s": t3 - t2, "shutdown_s": t4 - t3, "total_s": t4 - t0}))
"""
    (tmp / "cache").mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", code, str(num_cpus), str(ray_temp(tmp)), str(tmp / "cache")],
                          cwd=REPO, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ray start-up probe failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class CpuMeter:
    """CPU use on the machine during a block, to tell how much other load a measurement met.

    ``with CpuMeter() as m: ...`` then ``m.result``: ``elapsed_s``; ``busy_cpus``, the average
    number of cores busy on the whole machine (``/proc/stat``); ``other_cpus``, the cores used by
    processes that are not descendants of this one (other users' jobs), sampled from
    ``/proc/<pid>/stat`` every ``interval`` seconds (a lower bound: processes that live less than
    an interval are missed); ``steal_cpus``, taken by the hypervisor.
    """

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.result: dict[str, float] = {}

    def __enter__(self) -> "CpuMeter":
        self._stop = threading.Event()
        self._hz = os.sysconf("SC_CLK_TCK")
        self._boot_ticks = _boot_ticks(self._hz)
        self._seen: dict[tuple[int, int], int] = {}
        self._other_ticks = 0
        self._start_ticks = self._boot_ticks + time.monotonic() * self._hz if self._boot_ticks is not None else None
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._stat0, self._t0 = _proc_stat(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        elapsed = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self._sample()
        stat1 = _proc_stat()
        self.result = {"elapsed_s": elapsed}
        if elapsed > 0 and stat1 and self._stat0:
            self.result["busy_cpus"] = (stat1["busy"] - self._stat0["busy"]) / self._hz / elapsed
            self.result["steal_cpus"] = (stat1["steal"] - self._stat0["steal"]) / self._hz / elapsed
            self.result["other_cpus"] = self._other_ticks / self._hz / elapsed

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        procs = _all_procs()
        me = os.getpid()
        parent = {pid: ppid for pid, (ppid, _, _) in procs.items()}
        mine: set[int] = set()
        for pid in procs:
            chain, q = [], pid
            while q and q not in mine and q != me and q in parent and len(chain) < 64:
                chain.append(q)
                q = parent[q]
            if q == me or q in mine:
                mine.update(chain)
        for pid, (_, start, ticks) in procs.items():
            if pid in mine or pid == me:
                continue
            key = (pid, start)
            if key in self._seen:
                self._other_ticks += max(0, ticks - self._seen[key])
            elif not first and self._start_ticks is not None and start >= self._start_ticks:
                self._other_ticks += ticks  # started during the block: all of its time counts
            self._seen[key] = ticks


def _boot_ticks(hz: int) -> float | None:
    """Boot time on the ``monotonic`` clock, in clock ticks (``/proc/<pid>/stat`` start times count from boot)."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError):
        return None
    return (uptime - time.monotonic()) * hz


def _all_procs() -> dict[int, tuple[int, int, int]]:
    """``{pid: (ppid, start_ticks, utime + stime)}`` of every process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2:].split()
        try:
            out[int(entry.name)] = (int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]))
        except (IndexError, ValueError):
            continue
    return out


def _proc_stat() -> dict[str, int]:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "steal": steal}


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def rnd(x: Any, n: int = 3) -> Any:
    if isinstance(x, float):
        return round(x, n)
    if isinstance(x, dict):
        return {k: rnd(v, n) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rnd(v, n) for v in x]
    return x


@contextmanager
def temp_folder(prefix: str) -> Iterator[Path]:
    """A temp folder with a short path (Ray's socket paths live under it); removed afterwards
    unless ``BENCH_KEEP=1``."""
    path = Path(tempfile.mkdtemp(prefix=f"srb-{prefix}-", dir=os.environ.get("BENCH_TMP", "/tmp")))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


def machine() -> dict[str, Any]:
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "ffmpeg": ffmpeg[0] if ffmpeg else "", "loadavg": load,
    }


def finish(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Print the result as one JSON line and write ``bench/results/<name>.json``."""
    result = {"bench": name, **rnd(result), "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return result


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
