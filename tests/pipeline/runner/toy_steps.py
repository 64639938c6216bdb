"""Small steps for the runner tests: they log their calls in a folder, fail, crash or fan out on demand.

A module of their own so spawned workers and Ray actors import them by name.
"""

import os
from pathlib import Path

from core.clip import Clip, Drop
from pipeline.steps import Resources, Step


class Double(Step):
    """Writes a file with the clip's number doubled; counts its calls in a folder."""

    name = "double"
    resources = Resources(cpus=1)

    def __init__(self, log_dir: str, fail_on: int = -1):
        super().__init__({"fail_on": fail_on})
        self.log_dir, self.fail_on = log_dir, fail_on

    def setup(self):
        Path(self.log_dir, f"setup-{os.getpid()}").touch()

    def __call__(self, clip, out):
        n = int(clip.key)
        Path(self.log_dir, f"call-{n}").touch()
        if n == self.fail_on:
            raise ValueError(f"bad clip {n}")
        (out / "x.txt").write_text(str(2 * n))
        return clip.evolve(files={"x": str(out / "x.txt")}, scores={"n2": 2 * n})


class CrashOnce(Step):
    """Kills its worker process the first time it sees each clip (a segfault, an OOM kill)."""

    name = "crash_once"

    def __init__(self, log_dir: str, always: bool = False):
        super().__init__({"always": always})
        self.log_dir, self.always = log_dir, always

    def __call__(self, clip, out):
        marker = Path(self.log_dir, f"crashed-{clip.key}")
        if self.always or not marker.exists():
            marker.touch()
            os._exit(1)
        return clip


class BrokenSetup(Step):
    name = "broken"

    def setup(self):
        raise FileNotFoundError("weights/tiny/x/config.json missing")

    def __call__(self, clip, out):
        return clip


class Split(Step):
    """Fans a clip out into ``n`` clips (like segment); drops clips whose number is in ``drop``."""

    name = "split"
    resources = Resources(cpus=1)

    def __init__(self, n: int, drop: tuple = ()):
        super().__init__({"n": n, "drop": list(drop)})
        self.n, self.drop = n, drop

    def __call__(self, clip, out):
        if int(clip.key.split("_")[0]) in self.drop:
            return Drop("too_short", f"clip {clip.key}")
        return [clip.evolve(key=f"{clip.key}_{j}") for j in range(self.n)]


class Slow(Step):
    """Sleeps longer on the first source, so a barrier between steps would hold the other worker."""

    name = "slow"
    resources = Resources(cpus=1)

    def __init__(self, log_dir: str):
        super().__init__({})
        self.log_dir = log_dir

    def __call__(self, clip, out):
        import time

        time.sleep(0.6 if clip.key.startswith("0") else 0.05)
        Path(self.log_dir, f"slow-{clip.key}-{time.monotonic():.6f}").touch()
        return clip.evolve(scores={"slow": 1})


class Mark(Slow):
    """Records when it saw each clip."""

    name = "mark"

    def __call__(self, clip, out):
        import time

        Path(self.log_dir, f"mark-{clip.key}-{time.monotonic():.6f}").touch()
        return clip


def clips(n):
    return [Clip(key=str(i), dataset="d", source=f"/s/{i}", source_rel=f"{i}", source_hash=str(i)) for i in range(n)]


def calls(log_dir, prefix="call-"):
    return sorted(p.name for p in Path(log_dir).iterdir() if p.name.startswith(prefix))


def sequential(runner, steps, items):
    """The outcomes of mapping ``steps`` one after another (what ``chain`` must equal)."""
    outcomes = []
    for step in steps:
        outcomes.append(runner.map(step, items))
        items = outcomes[-1].kept
    return outcomes



class SlowSetup(Step):
    """Takes ``seconds`` to set up (a model load), then passes clips through."""

    name = "slow_setup"
    resources = Resources(cpus=1)

    def __init__(self, seconds: float):
        super().__init__({"seconds": seconds})
        self.seconds = seconds

    def setup(self):
        import time

        time.sleep(self.seconds)

    def __call__(self, clip, out):
        return clip
