"""Plots from rankings and trial histories (no Ray): the heatmap, the curves with cut trials, the PBT schedules.

The tests read what each PNG shows from the Figure that drew it (``figures.of(png)``), not from its pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.colors import to_rgba

from search.report import Ranking, Row, order_rows
from search.report.plots import curves, heatmap, pbt_schedules
from search.spec import validate

RED = to_rgba("red")


def _ranking(rows: list[Row], params: tuple[str, ...], mode: str = "max") -> Ranking:
    return Ranking(metric="bleu", mode=mode, scope="last", params=params, columns=(), rows=order_rows(rows, mode))


def _panels(figure) -> list:
    """The heatmap's panels (the axes with an image; the colorbar has none)."""
    return [ax for ax in figure.axes if ax.images]


def _cells(ax) -> list[list[float | None]]:
    """The cell values a heatmap panel draws, rows num_beams, columns length_penalty; None where no trial (NaN)."""
    return ax.images[0].get_array().tolist()


def _boxes(ax) -> list[tuple[float, float]]:
    """The lower left corners of the red boxes (the winner's cells) in a heatmap panel."""
    return [(p.get_x(), p.get_y()) for p in ax.patches if p.get_edgecolor() == RED]


def test_heatmap_has_one_panel_per_early_stopping_value(tmp_path, figures):
    def bleu(nb: int, lp: float, es: bool) -> float:
        return 20 + nb - abs(lp - 1.0) * 10 + es

    beams, penalties = (1, 4, 8), (0.6, 0.8, 1.0, 1.2)
    rows = [
        Row(f"t{nb}{lp}{es}", "TERMINATED", 1, bleu(nb, lp, es), {"num_beams": nb, "length_penalty": lp, "early_stopping": es})
        for nb in beams for lp in penalties for es in (True, False)
    ]  # fmt: skip
    assert heatmap(_ranking(rows, ("num_beams", "length_penalty")), tmp_path / "one.png") == tmp_path / "one.png"
    no_es = [Row(r.trial_id, r.status, 1, r.value, {k: v for k, v in r.params.items() if k != "early_stopping"})
             for r in rows if r.params["early_stopping"]]  # fmt: skip
    heatmap(_ranking(no_es, ("num_beams", "length_penalty")), tmp_path / "single.png")

    figure = figures.of(tmp_path / "one.png")
    two = _panels(figure)
    assert [ax.get_title() for ax in two] == ["early_stopping=False", "early_stopping=True"]
    assert two[0].get_position().x1 < two[1].get_position().x0  # side by side
    for ax, es in zip(two, (False, True), strict=True):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.6", "0.8", "1", "1.2"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "4", "8"]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("length_penalty", "num_beams")
        cells = [[bleu(nb, lp, es) for lp in penalties] for nb in beams]
        assert _cells(ax) == cells
        assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for row in cells for v in row]
    # the best, 29 at num_beams=8 x length_penalty=1.0 with early stopping, is boxed in red, and nothing else
    assert (_boxes(two[0]), _boxes(two[1])) == ([], [(1.5, 1.5)])
    assert figure.get_suptitle() == "bleu (max, scope=last); best boxed in red"

    (single,) = _panels(figures.of(tmp_path / "single.png"))
    assert single.get_title() == "" and _cells(single) == [[bleu(nb, lp, True) for lp in penalties] for nb in beams]


def test_heatmap_leaves_a_cell_without_a_trial_empty(tmp_path, figures):
    rows = [
        Row("a", "TERMINATED", 1, 10.0, {"num_beams": 1, "length_penalty": 0.8}),
        Row("b", "TERMINATED", 1, 12.0, {"num_beams": 4, "length_penalty": 1.0}),
    ]
    heatmap(_ranking(rows, ("num_beams", "length_penalty")), tmp_path / "h.png")
    (ax,) = _panels(figures.of(tmp_path / "h.png"))
    assert _cells(ax) == [[10.0, None], [None, 12.0]]
    assert [(t.get_position(), t.get_text()) for t in ax.texts] == [((0, 0), "10.00"), ((1, 1), "12.00")]
    assert _boxes(ax) == [(0.5, 0.5)]


def test_heatmap_skips_runs_without_a_beam_grid(tmp_path, figures):
    rows = [Row("a", "TERMINATED", 1, 1.0, {"lr": 0.1})]
    assert heatmap(_ranking(rows, ("lr",)), tmp_path / "h.png") is None
    assert not (tmp_path / "h.png").exists() and figures.saved == []


def _trial(tmp_path: Path, trial_id: str, bleus: list[float], lrs: list[float], status: str = "TERMINATED") -> Row:
    path = tmp_path / trial_id
    path.mkdir()
    results = [
        {"training_iteration": i + 1, "step": 100 * (i + 1), "bleu": b, "eval_loss": 5 - b / 3, "config": {"lr": lr}}
        for i, (b, lr) in enumerate(zip(bleus, lrs, strict=True))
    ]
    (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    return Row(trial_id, status, len(bleus), bleus[-1], {"lr": lrs[-1]}, path=str(path))


def _curves(ax) -> dict[str, tuple[list, list, float]]:
    """The labelled lines of a panel: label -> (x, y, linewidth)."""
    return {
        line.get_label(): (line.get_xdata().tolist(), line.get_ydata().tolist(), line.get_linewidth())
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def _crosses(ax) -> list[tuple[float, float, tuple]]:
    """The ``x`` markers that end a cut or errored trial: (x, y, colour)."""
    return [
        (line.get_xdata()[0], line.get_ydata()[0], to_rgba(line.get_color()))
        for line in ax.get_lines()
        if line.get_marker() == "x"
    ]


def test_curves_and_schedules_of_an_asha_and_a_pbt_run(tmp_path, figures):
    rows = [
        _trial(tmp_path, "best", [1, 3, 6, 9], [0.1, 0.1, 0.3, 0.3]),
        _trial(tmp_path, "cut", [0.5, 1.0], [0.01, 0.01], status="STOPPED"),
        _trial(tmp_path, "broken", [0.2], [0.02], status="ERROR"),
    ]
    ranking = _ranking(rows, ("lr",))
    assert curves(ranking, tmp_path / "curves.png") == tmp_path / "curves.png"
    # a panel for the metric and one for eval_loss, against step; the best bold, a cut trial faint and crossed
    bleu, loss = figures.of(tmp_path / "curves.png").axes
    assert (bleu.get_ylabel(), loss.get_ylabel(), loss.get_xlabel()) == ("bleu", "eval_loss", "step")
    assert bleu.get_title() == "bleu per report (x: cut by the scheduler, red x: errored)"
    drawn = {
        "best (best)": ([100, 200, 300, 400], [1, 3, 6, 9], 2.6),
        "cut stopped": ([100, 200], [0.5, 1.0], 1.2),
        "broken error": ([100], [0.2], 1.2),
    }
    assert _curves(bleu) == drawn
    # eval_loss, reported as 5 - bleu / 3, at the same steps in the same styles
    assert _curves(loss) == {label: (x, [5 - b / 3 for b in y], width) for label, (x, y, width) in drawn.items()}
    lines = {line.get_label(): line for line in bleu.get_lines()}
    assert [lines[t].get_alpha() for t in ("best (best)", "cut stopped", "broken error")] == [0.95, 0.45, 0.45]
    cut_colour = to_rgba(lines["cut stopped"].get_color())
    assert _crosses(bleu) == [(200, 1.0, cut_colour), (100, 0.2, RED)]

    spec = validate({"method": "random", "metric": {"name": "bleu"}, "parameters": {"lr": {"values": [0.1]}}}, "x")
    assert pbt_schedules(ranking, spec, tmp_path / "pbt.png") == tmp_path / "pbt.png"
    # lr at each reported iteration, the winner bold; lr spans 30x, so the axis is logarithmic
    (lr,) = figures.of(tmp_path / "pbt.png").axes
    assert (lr.get_ylabel(), lr.get_xlabel(), lr.get_yscale()) == ("lr", "training_iteration", "log")
    assert lr.get_title() == "PBT hyperparameter schedules (winner bold)"
    assert _curves(lr) == {
        "best (best)": ([1, 2, 3, 4], [0.1, 0.1, 0.3, 0.3], 2.6),
        "cut": ([1, 2], [0.01, 0.01], 1.0),
        "broken": ([1], [0.02], 1.0),
    }
    assert {line.get_drawstyle() for line in lr.get_lines()} == {"steps-post"}


def test_curves_need_more_than_one_report(tmp_path, figures):
    rows = [_trial(tmp_path, "a", [1.0], [0.1]), _trial(tmp_path, "b", [2.0], [0.2])]
    assert curves(_ranking(rows, ("lr",)), tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists() and figures.saved == []


@pytest.mark.parametrize("mode", ["max", "min"])
def test_heatmap_cell_keeps_the_better_trial(tmp_path, mode, figures):
    rows = [Row(f"t{v}", "TERMINATED", 1, v, {"num_beams": 4, "length_penalty": 1.0, "x": v}) for v in (3.0, 7.0)]
    heatmap(_ranking(rows, ("num_beams", "length_penalty", "x"), mode), tmp_path / "h.png")
    figure = figures.of(tmp_path / "h.png")
    (ax,) = _panels(figure)
    better = 7.0 if mode == "max" else 3.0
    assert _cells(ax) == [[better]]
    assert [t.get_text() for t in ax.texts] == [f"{better:.2f}"]
    assert figure.get_suptitle() == f"bleu ({mode}, scope=last) (best over x); best boxed in red"
