from dataclasses import dataclass, field
from typing import Literal

import pytest

from core import params
from core.params import ParamsError


@dataclass(frozen=True)
class Inner:
    rate: int = 16000
    gain: float = 0.0


@dataclass(frozen=True)
class Outer:
    name: str
    mode: Literal["a", "b"] = "a"
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    address: str | None = None


def test_load_nested_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("top:\n  sec:\n    name: x\n    inner: {rate: 8000, gain: 3}\n    sizes: [4, 5]\n")
    out = params.load(Outer, "top.sec", p)
    assert out == Outer(name="x", inner=Inner(rate=8000, gain=3.0), sizes=(4, 5))
    assert isinstance(out.inner.gain, float)
    with pytest.raises(Exception):
        out.name = "y"  # frozen


@pytest.mark.parametrize("raw,match", [
    ({"name": "x", "inner": {"rat": 1}}, r"top.sec.inner: unknown key 'rat'"),
    ({"name": "x", "nmae": 1}, r"unknown key 'nmae'"),
    ({}, r"top.sec.name: required key is missing"),
    ({"name": "x", "mode": "c"}, r"top.sec.mode: 'c' is not one of"),
    ({"name": "x", "inner": {"rate": "fast"}}, r"top.sec.inner.rate: expected an integer"),
    ({"name": "x", "sizes": [1, "a"]}, r"sizes\[1\]: expected an integer"),
])
def test_errors_name_the_key(tmp_path, raw, match):
    import yaml

    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"top": {"sec": raw}}))
    with pytest.raises(ParamsError, match=match) as e:
        params.load(Outer, "top.sec", p)
    assert str(p) in str(e.value)


def test_missing_section_and_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("a: {}\n")
    with pytest.raises(ParamsError, match="missing section 'b'"):
        params.load(Inner, "b", p)
    with pytest.raises(ParamsError, match="not found"):
        params.load(Inner, "a", tmp_path / "nope.yaml")


def test_post_init_checks_become_params_errors():
    from pipeline.steps.segment import SegmentParams

    with pytest.raises(ParamsError, match="steps.segment: max_s"):
        params.from_dict(SegmentParams, {"min_s": 5.0, "max_s": 6.0}, "params.yaml: steps.segment")


def test_fingerprint_changes_with_values():
    assert params.fingerprint(Inner()) == params.fingerprint(Inner())
    assert params.fingerprint(Inner()) != params.fingerprint(Inner(rate=8000))


def test_repository_params_file_loads_every_section():
    """The shipped params.yaml matches every dataclass that reads it."""
    from pathlib import Path

    from pipeline import datasets
    from pipeline.cache import CacheParams
    from pipeline.ingest import IngestSteps
    from pipeline.report import ReportParams
    from pipeline.runner import RunnerParams
    from core.shards import ShardParams
    from core.weights import WeightsParams

    p = Path(__file__).resolve().parents[2] / "params.yaml"
    for cls, sec in [(IngestSteps, "steps"), (RunnerParams, "runner"), (CacheParams, "cache"), (ShardParams, "shards"),
                     (WeightsParams, "weights"), (ReportParams, "report")]:
        params.load(cls, sec, p)
    for name, entry in params.read_yaml(p)["datasets"].items():
        datasets.parse(name, entry)
