"""The one command-line preamble of every stage (``python -m pipeline.ingest``, ``... extract`` ...).

A stage module defines ``run(...)`` and a two-line ``main``::

    def main(argv=None) -> int:
        ap = cli.parser("python -m pipeline.select", __doc__)
        return cli.run(ap, argv, lambda args: run(params_file=args.params))

Every stage then takes the same ``--params FILE`` (default ``params.yaml`` or
``$SYNCHRORAMA_PARAMS``), ``-v`` (debug detail) and ``-q`` (warnings only), logs as
``LEVEL logger: message``, and ends with one exit status DVC can act on (below).

Third-party noise is silenced at its source unless ``-v``: :func:`third_party` sets the libraries'
own switches in the environment (inherited by worker processes): no weight-loading or download bars
(``HF_HUB_DISABLE_PROGRESS_BARS``), library loggers at WARNING. MediaPipe (TFLite via absl) writes
its lines straight to descriptor 2 from C++ (``W0000 ... inference_feedback_manager.cc``), which no
switch of mediapipe 0.10 turns off and which break progress bars mid-line: in a stage's own process
:func:`filter_native_stderr` passes descriptor 2 through a pipe whose reader drops exactly those
line patterns (to the DEBUG log) and forwards every other byte as it comes.

Environment: :func:`stage_environment` gives every stage process (and the workers and tools it starts) what
``make`` gives it, unless the shell sets otherwise, so ``dvc repro`` from an activated shell computes the same
bytes as ``make demo``: offline (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``: every model loads from
``weights/``) and one OpenMP/torch thread per process (``OMP_NUM_THREADS=1``: parallelism comes from worker
processes, and float reductions do not depend on the machine's core count; set it yourself to use more).

Exit status:

* 0: done;
* 2: a configuration or input error the user can fix (params typo, missing weights folder, missing
  upstream output, a shard that breaks the format, a full disk or a read-only folder), printed as one line naming the file and the fix;
* 3: the stage wrote its outputs but must not pass (:class:`StageFailed`, e.g. more ``error:*``
  rejects than ``runner.max_error_fraction`` allows), so ``dvc repro`` stops instead of going on.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from core.params import ParamsError
from core.shards import ShardFormatError
from core.storage import StorageError
from core.weights import WeightsError

log = logging.getLogger("stage")

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Errors a user fixes (exit status 2): they carry a message naming the file, the key and the fix.
USER_ERRORS: tuple[type[BaseException], ...] = (ParamsError, WeightsError, ShardFormatError, FileNotFoundError, StorageError)


class StageFailed(RuntimeError):
    """The stage ran and wrote its outputs, but its result must stop the pipeline (exit status 3)."""


def parser(prog: str, doc: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """An argument parser with the common stage options; ``doc``'s first paragraph is the description."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    ap.add_argument("--params", type=Path, default=None, help="params file (default: params.yaml or $SYNCHRORAMA_PARAMS)")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more detail (debug logging)")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return ap


def configure_logging(verbose: int = 0, quiet_: bool = False, native: bool = False) -> None:
    """Stage logging; third-party noise (weight-loading bars, MediaPipe's native lines) is silenced
    at its source unless ``verbose`` (:mod:`core.quiet`; ``native``: this process is the stage's own)."""
    level = logging.WARNING if quiet_ else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    third_party(verbose=bool(verbose), native=native)


def run(ap: argparse.ArgumentParser, argv: list[str] | None, body: Callable[[argparse.Namespace], Any],
        user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv``, set up logging, run ``body(args)`` and map its outcome to the exit status."""
    args = ap.parse_args(argv)
    stage_environment()
    configure_logging(args.verbose, args.quiet, native=argv is None)  # argv None: the command line of the process
    try:
        body(args)
    except StageFailed as e:
        log.error("%s", e)
        return 3
    except USER_ERRORS + user_errors as e:
        log.error("%s", e)
        return 2
    return 0


#: the Makefile's run environment, the default of every stage process (a value the shell sets wins)
STAGE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def stage_environment() -> None:
    """Set :data:`STAGE_ENV`'s variables the shell left unset, for this process and every process it starts.

    Without them a stage run from an activated shell (no ``make``) used as many torch threads as the machine
    has cores (other float sums in Demucs, wav2vec2, training: outputs that differ from the committed
    ``dvc.lock``) and let transformers write ``local_files_only: false`` into saved tokenizer configs.
    OpenBLAS and OpenMP read ``OMP_NUM_THREADS`` when they are loaded: if this process already imported numpy or
    torch (a stage module's own imports run first), their thread pools are set directly (threadpoolctl; torch's
    own count too). Without that, scipy's ``sqrtm`` in the FVD ran on two OpenBLAS threads and its last digits
    differed."""
    for name, value in STAGE_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            if name == "OMP_NUM_THREADS" and ("numpy" in sys.modules or "torch" in sys.modules):
                from threadpoolctl import threadpool_limits

                threadpool_limits(limits=int(value))  # every BLAS and OpenMP library loaded so far, for the process
                torch = sys.modules.get("torch")
                if torch is not None:
                    torch.set_num_threads(int(value))


# -- third-party noise ----------------------------------------------------------------------------
_native_log = logging.getLogger("stage.native")

#: library switches (set only when not already set by the user)
ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / hub download bars
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",  # advisory notes only; real warnings still show
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GLOG_minloglevel": "2",
}
#: python loggers of libraries, held at WARNING
LOGGERS = ("absl", "transformers", "huggingface_hub", "diffusers", "urllib3", "filelock", "speechbrain", "numba", "matplotlib")
#: native lines that are noise (optionally prefixed by Ray's ``(pid=..)``): absl/glog lines, TFLite's delegate
#: line; found anywhere in a line, since they may start right after a progress bar's last update
NATIVE_NOISE = re.compile(
    rb"(\([^)]*\) )?([IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]"
    rb"|INFO: Created TensorFlow Lite .*delegate"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb")"
)

_installed: dict[str, object] = {}


def third_party(verbose: bool = False, native: bool = True) -> None:
    """Silence third-party noise for this process and the workers it starts (nothing with ``verbose``);
    ``native``: filter descriptor 2 too (a stage's own process; not when called inside another program)."""
    if verbose:
        return
    for name, value in ENV.items():
        os.environ.setdefault(name, value)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    tlog = sys.modules.get("transformers.utils.logging")
    if tlog is not None:  # imported before the switch was set: turn its bars off directly
        tlog.disable_progress_bar()  # type: ignore[attr-defined]
    if native:
        filter_native_stderr()


def filter_native_stderr() -> bool:
    """Route file descriptor 2 through the noise filter (once per process); False where it cannot."""
    if _installed:
        return True
    try:
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:  # pragma: no cover - no descriptor 2 (a daemon)
        return False
    thread = threading.Thread(target=_pump, args=(read_fd, saved), name="stderr-filter", daemon=True)
    thread.start()
    _installed.update(saved=saved, thread=thread)
    atexit.register(restore_stderr)
    return True


def restore_stderr() -> None:
    """Put descriptor 2 back and forward what is still in the pipe (at exit, and in tests)."""
    if not _installed:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    saved = _installed.pop("saved")
    thread = _installed.pop("thread")
    os.dup2(saved, 2)  # closes the pipe's last write end held by this process: the reader sees EOF
    thread.join(timeout=2)  # a child still holding the pipe (a Ray daemon) must not hold up the exit  # type: ignore[attr-defined]
    os.close(saved)  # type: ignore[arg-type]


def _pump(read_fd: int, out_fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data = pending + chunk
        pending = b""
        keep = []
        for line in data.splitlines(keepends=True):
            found = NATIVE_NOISE.search(line)
            if found is None:
                keep.append(line)
            elif line.endswith(b"\n"):
                keep.append(line[: found.start()])  # a progress bar it interrupted stays
                _native_log.debug("native: %s", line[found.start():].decode(errors="replace").rstrip())
            else:
                pending = line  # a noise line cut by the read: wait for its end
        if keep:
            try:
                os.write(out_fd, b"".join(keep))
            except OSError:
                pass
    if pending:
        _native_log.debug("native: %s", pending.decode(errors="replace").rstrip())
    os.close(read_fd)
