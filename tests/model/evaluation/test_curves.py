"""The training-curve charts of the evaluation page: points scaled into the plot box, broken lines at
non-finite values, a lone point, thinning of long runs, and the stage folders read from dvclive's layout."""

from __future__ import annotations

import json
import math
import re

from model.evaluation.curves import MAX_POINTS, curves_html, line_svg, read_stages

# the default chart: box x 62..318, y 24..154, points inset by 7
LEFT, RIGHT, TOP, BOTTOM = 69.0, 311.0, 31.0, 147.0


def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in m.split()] for m in re.findall(r"<polyline[^>]*points='([^']*)'", svg)]


def _dots(svg: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"<circle cx='([^']*)' cy='([^']*)'", svg)]


def test_points_fill_the_box_by_step_and_value():
    svg = line_svg("loss/total", [(0, 1.0), (5, 3.0), (10, 2.0)])
    (line,) = _polylines(svg)
    assert line == [(LEFT, BOTTOM), ((LEFT + RIGHT) / 2, TOP), (RIGHT, (TOP + BOTTOM) / 2)]
    assert _dots(svg) == line
    assert "loss/total = 2 at step 10" in svg and ">step 0<" in svg and ">10<" in svg and ">1<" in svg and ">3<" in svg


def test_a_shared_step_range_places_a_sparse_series_where_its_steps_are():
    svg = line_svg("val/loss", [(5, 1.0), (10, 2.0)], steps=(0, 10))
    (line,) = _polylines(svg)
    assert line[0][0] == (LEFT + RIGHT) / 2 and line[1][0] == RIGHT


def test_close_values_get_the_digits_that_tell_them_apart():
    svg = line_svg("val/loss", [(1, 1.15468), (2, 1.15473)])
    assert ">1.15468<" in svg and ">1.15473<" in svg


def test_a_nan_breaks_the_line_and_a_lone_point_is_a_dot():
    svg = line_svg("grad_norm", [(0, 1.0), (1, math.nan), (2, 2.0), (3, 3.0)])
    assert len(_polylines(svg)) == 1 and len(_polylines(svg)[0]) == 2  # steps 2-3: step 0 stands alone
    assert len(_dots(svg)) == 3 and "grad_norm = 3 at step 3" in svg
    one = line_svg("lr", [(4, 0.5)])
    assert _polylines(one) == [] and _dots(one) == [((62 + 318) / 2, (24 + 154) / 2)] and ">step 4<" in one
    empty = line_svg("lr", [(0, math.nan), (1, math.inf)])
    assert "no finite values" in empty and _dots(empty) == [] and _polylines(empty) == []


def test_a_long_run_is_thinned_and_keeps_its_spike():
    points = [(float(i), 1.0 + (100.0 if i == 5003 else 0.0) + 0.001 * (i % 7)) for i in range(10000)]
    svg = line_svg("loss/total", points)
    (line,) = _polylines(svg)
    assert len(line) <= MAX_POINTS and min(y for _, y in line) == TOP and _dots(svg) == []
    assert all(LEFT <= x <= RIGHT and TOP <= y <= BOTTOM for x, y in line)


def test_stage_folders_in_dvclive_layout(tmp_path):
    assert "No training logs" in curves_html(tmp_path / "none")
    plots = tmp_path / "stage1" / "plots" / "metrics"
    (plots / "loss").mkdir(parents=True)
    (plots / "loss" / "total.tsv").write_text("step\ttotal\n1\t2.0\n2\t1.5\n")
    (plots / "lr.tsv").write_text("step\tlr\n1\t1e-4\n2\t1e-4\n")
    (plots / "loss" / "diffusion.tsv").write_text("step\tdiffusion\n1\t2.0\n2\tnan\n")
    (tmp_path / "stage1" / "metrics.json").write_text(json.dumps({"tiny": True, "step": 2, "loss": {"total": 1.5}, "lr": 1e-4}))
    (tmp_path / "a2m" / "plots" / "metrics").mkdir(parents=True)
    (tmp_path / "a2m" / "plots" / "metrics" / "grad_norm.tsv").write_text("step\tgrad_norm\n3\t0.5\n")
    (tmp_path / "notes").mkdir()  # not a stage: no dvclive output
    stages = read_stages(tmp_path)
    assert [s.name for s in stages] == ["a2m", "stage1"]
    a2m, stage1 = stages
    assert list(stage1.series) == ["loss/total", "loss/diffusion", "lr"] and stage1.tiny and not a2m.tiny
    assert stage1.series["loss/total"] == [(1.0, 2.0), (2.0, 1.5)] and math.isnan(stage1.series["loss/diffusion"][1][1])
    assert stage1.final == {"step": 2.0, "loss/total": 1.5, "lr": 1e-4}
    page = curves_html(tmp_path)
    assert page.index("<h3>a2m</h3>") < page.index("<h3>stage1 <small class=tiny-mark>(2 steps, tiny stand-in weights)")
    assert page.count("<svg") == 4 and "loss/total&nbsp;=&nbsp;1.5" in page and "loss/diffusion = 2 at step 1" in page
