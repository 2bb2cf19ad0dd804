"""Plots from rankings and trial histories (no Ray): the heatmap, the curves with cut trials, the PBT schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.plots import curves, heatmap, pbt_schedules
from search.results import Ranking, Row, order_rows
from search.spec import validate


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _ranking(rows: list[Row], params: tuple[str, ...], mode: str = "max") -> Ranking:
    return Ranking(metric="bleu", mode=mode, scope="last", params=params, columns=(), rows=order_rows(rows, mode))


def test_heatmap_has_one_panel_per_early_stopping_value(tmp_path):
    rows = [
        Row(f"t{nb}{lp}{es}", "TERMINATED", 1, 20 + nb - abs(lp - 1.0) * 10 + es,
            {"num_beams": nb, "length_penalty": lp, "early_stopping": es})
        for nb in (1, 4, 8) for lp in (0.6, 0.8, 1.0, 1.2) for es in (True, False)
    ]  # fmt: skip
    one = heatmap(_ranking(rows, ("num_beams", "length_penalty")), tmp_path / "one.png")
    no_es = [Row(r.trial_id, r.status, 1, r.value, {k: v for k, v in r.params.items() if k != "early_stopping"})
             for r in rows if r.params["early_stopping"]]  # fmt: skip
    single = heatmap(_ranking(no_es, ("num_beams", "length_penalty")), tmp_path / "single.png")
    width_two, _ = _png_size(one)
    width_one, _ = _png_size(single)
    assert width_two > 1.3 * width_one  # two panels side by side


def test_heatmap_skips_runs_without_a_beam_grid(tmp_path):
    rows = [Row("a", "TERMINATED", 1, 1.0, {"lr": 0.1})]
    assert heatmap(_ranking(rows, ("lr",)), tmp_path / "h.png") is None
    assert not (tmp_path / "h.png").exists()


def _trial(tmp_path: Path, trial_id: str, bleus: list[float], lrs: list[float], status: str = "TERMINATED") -> Row:
    path = tmp_path / trial_id
    path.mkdir()
    results = [
        {"training_iteration": i + 1, "step": 100 * (i + 1), "bleu": b, "eval_loss": 5 - b / 3, "config": {"lr": lr}}
        for i, (b, lr) in enumerate(zip(bleus, lrs, strict=True))
    ]
    (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    return Row(trial_id, status, len(bleus), bleus[-1], {"lr": lrs[-1]}, path=str(path))


def test_curves_and_schedules_of_an_asha_and_a_pbt_run(tmp_path):
    rows = [
        _trial(tmp_path, "best", [1, 3, 6, 9], [0.1, 0.1, 0.3, 0.3]),
        _trial(tmp_path, "cut", [0.5, 1.0], [0.01, 0.01], status="STOPPED"),
        _trial(tmp_path, "broken", [0.2], [0.02], status="ERROR"),
    ]
    ranking = _ranking(rows, ("lr",))
    assert curves(ranking, tmp_path / "curves.png") == tmp_path / "curves.png"
    assert _png_size(tmp_path / "curves.png")[0] > 500
    spec = validate({"method": "random", "metric": {"name": "bleu"}, "parameters": {"lr": {"values": [0.1]}}}, "x")
    assert pbt_schedules(ranking, spec, tmp_path / "pbt.png") == tmp_path / "pbt.png"
    assert _png_size(tmp_path / "pbt.png")[1] > 200


def test_curves_need_more_than_one_report(tmp_path):
    rows = [_trial(tmp_path, "a", [1.0], [0.1]), _trial(tmp_path, "b", [2.0], [0.2])]
    assert curves(_ranking(rows, ("lr",)), tmp_path / "c.png") is None


@pytest.mark.parametrize("mode", ["max", "min"])
def test_heatmap_cell_keeps_the_better_trial(tmp_path, mode, monkeypatch):
    import search.plots as plots

    seen = {}
    original = plots._pyplot

    def spy():
        plt = original()
        real = plt.Axes.imshow

        def imshow(self, grid, **kw):
            seen["grid"] = grid
            return real(self, grid, **kw)

        monkeypatch.setattr(plt.Axes, "imshow", imshow)
        return plt

    monkeypatch.setattr(plots, "_pyplot", spy)
    rows = [Row(f"t{v}", "TERMINATED", 1, v, {"num_beams": 4, "length_penalty": 1.0, "x": v}) for v in (3.0, 7.0)]
    heatmap(_ranking(rows, ("num_beams", "length_penalty", "x"), mode), tmp_path / "h.png")
    assert seen["grid"] == [[7.0 if mode == "max" else 3.0]]
