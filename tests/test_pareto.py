"""Decoding quality against cost: each decode trial's own cost, the Pareto front of (metric, cost) in every format and
in ``cost.png``, and ``export --prefer fastest-tied`` (the cheapest config the paired bootstrap ties with the best)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import REFERENCES, translations
from test_decode import DATA, base, model_dir  # noqa: F401 (model_dir: the fixture of a small random BART)

from search.errors import SpecError, UserError
from search.export import GENERATION_FILE, fastest_tied
from search.metrics import corpus_scores
from search.report import FINISHED, Ranking, Row, format_ranking, mark_front, mark_ties, order_rows, pareto_front
from search.report.plots import cost_plot


def row(trial_id: str, value: float | None, cost: float | None, status: str = FINISHED, **kw) -> Row:
    return Row(trial_id, status, 1, value, {"num_beams": len(trial_id)}, {"beam_steps": cost}, **kw)


def ids(rows) -> list[str]:
    return [r.trial_id for r in rows]


# ------------------------------------------------------------------------------------------------ the front


def test_front_keeps_what_nothing_dominates_cheapest_first():
    rows = [row("a", 39.2, 150), row("b", 39.1, 50), row("c", 38.0, 60), row("d", 37.0, 10), row("e", 39.2, 200)]
    # c is worse and dearer than b; e as good as a but dearer
    assert ids(pareto_front(rows, "max", "beam_steps")) == ["d", "b", "a"]


def test_front_with_ties_in_cost_and_equal_points():
    rows = [row("a", 30.0, 40), row("b", 31.0, 40), row("c", 31.0, 40), row("d", 29.0, 10)]
    # a is dominated by b at the same cost; b and c are equal on both, so neither dominates the other
    assert ids(pareto_front(rows, "max", "beam_steps")) == ["d", "b", "c"]


def test_front_of_a_metric_to_minimize():
    rows = [row("a", 0.40, 100), row("b", 0.45, 20), row("c", 0.50, 30), row("d", 0.39, 300)]
    assert ids(pareto_front(rows, "min", "beam_steps")) == ["b", "a", "d"]
    assert ids(pareto_front(rows, "max", "beam_steps")) == ["b", "c"]


def test_front_skips_rows_without_value_or_cost():
    rows = [row("a", None, 1), row("b", 10.0, None), row("c", 5.0, 50), row("d", 6.0, "n/a")]
    assert ids(pareto_front(rows, "max", "beam_steps")) == ["c"]


def ranking(rows: list[Row], mode: str = "max", bootstrap: str | None = None) -> Ranking:
    return Ranking(
        metric="bleu", mode=mode, scope="last", params=("num_beams",), columns=("chrf",),
        rows=order_rows(rows, mode), bootstrap=bootstrap,
    )  # fmt: skip


def test_mark_front_marks_ranked_rows_only_and_shows_the_cost():
    marked = mark_front(
        ranking([row("a", 39.0, 90), row("b", 38.0, 30), row("c", 37.0, 60), row("s", 40.0, 5, "STOPPED")])
    )
    assert {r.trial_id: r.front for r in marked.rows} == {"a": True, "b": True, "c": False, "s": None}
    assert marked.cost == "beam_steps" and marked.columns == ("chrf", "beam_steps")
    with pytest.raises(UserError, match="--cost: no finished trial reports 'est_seconds'"):
        mark_front(ranking([row("a", 39.0, 90)]), "est_seconds")


def test_every_format_shows_the_front():
    marked = mark_front(ranking([row("a", 39.0, 90), row("bb", 38.0, 30), row("ccc", 37.0, 60)]))
    md = format_ranking(marked, "md").splitlines()
    assert md[2] == "| bleu | front | num_beams | chrf | beam_steps | trial_id | status | training_iteration |"
    assert md[4].startswith("| 39 | ◆ |") and md[6].startswith("| 37 |  |")
    assert any("◆ front: on the Pareto front of bleu (max) against beam_steps (min)" in line for line in md)
    rows = list(csv.DictReader(io.StringIO(format_ranking(marked, "csv"))))
    assert [(r["trial_id"], r["front"]) for r in rows] == [("a", "True"), ("bb", "True"), ("ccc", "False")]
    data = json.loads(format_ranking(marked, "json"))
    assert data["cost"] == "beam_steps" and [r["front"] for r in data["rows"]] == [True, True, False]
    table = format_ranking(marked, "table", width=120)
    header = next(line for line in table.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")][:4] == ["bleu", "num_beams", "front", "beam_steps"]
    assert table.count("◆") == 3  # two rows and the note
    assert "front" not in format_ranking(ranking([row("a", 39.0, 90)]), "md")  # no front asked, no column


# ------------------------------------------------------------------------------------------------ fastest tied


def ranked_trials(tmp_path: Path, errors: dict[str, tuple[float, int]]) -> Ranking:
    """Trials whose translations have the given error rates and beam_steps, ranked and tested as rank() does."""
    rows = []
    for trial_id, (error, cost) in errors.items():
        path = tmp_path / trial_id
        path.mkdir()
        hyps = translations(error)
        (path / "hypotheses.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        (path / "references.txt").write_text("".join(r + "\n" for r in REFERENCES), encoding="utf-8")
        value = corpus_scores(hyps, REFERENCES)["bleu"]
        rows.append(Row(trial_id, FINISHED, 1, value, {"num_beams": cost // 10}, {"beam_steps": cost}, path=str(path)))
    r = ranking(rows)
    return mark_ties(r, n_samples=300, top=len(r.ranked))


def test_fastest_tied_takes_the_cheapest_config_tied_with_the_best(tmp_path):
    r = ranked_trials(tmp_path, {"nb15": (0.0, 150), "nb4": (0.01, 40), "nb8": (0.005, 80), "greedy": (0.3, 10)})
    assert r.best.trial_id == "nb15"
    chosen, lines = fastest_tied(r)
    assert chosen.trial_id == "nb4" and chosen.tied and chosen.p_value >= 0.05
    assert lines[0].startswith("best on bleu (max): nb15 (num_beams=15)") and "beam_steps=150" in lines[0]
    assert lines[1].startswith("exported the fastest tied: nb4 (num_beams=4)")
    assert "3.75x cheaper in beam_steps" in lines[2] and "cannot separate it from the best" in lines[2]


def test_fastest_tied_exports_the_best_when_nothing_cheaper_ties(tmp_path):
    r = ranked_trials(tmp_path, {"nb15": (0.0, 150), "greedy": (0.3, 10), "nb20": (0.0, 200)})
    chosen, lines = fastest_tied(r)
    assert chosen.trial_id == "nb15" and "exported the best: no config tied with it (of 2) is cheaper" in lines[1]
    untested = ranking([row("a", 39.0, 90), row("b", 38.9, 30)])  # no translations: no tie marks
    chosen, lines = fastest_tied(untested)
    assert chosen.trial_id == "a" and "exported the best: no tie marks" in lines[1]


# ------------------------------------------------------------------------------------------------ the cost plot


def test_cost_plot_draws_the_front_and_the_tie_set(tmp_path, figures):
    rows = [
        row("a", 39.0, 90, tied=True), row("b", 38.9, 30, tied=True, p_value=0.4), row("c", 37.0, 60, tied=False,
        p_value=0.01), row("d", 30.0, 10, tied=None),
    ]  # fmt: skip
    marked = mark_front(ranking(rows, bootstrap="paired bootstrap"))
    assert cost_plot(marked, tmp_path / "cost.png") == tmp_path / "cost.png"
    (ax,) = figures.of(tmp_path / "cost.png").axes
    groups = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert groups["tied with the best"] == [[90, 39.0], [30, 38.9]]
    assert groups["worse than the best"] == [[60, 37.0]] and groups["not tested"] == [[10, 30.0]]
    assert groups["best"] == [[90, 39.0]]
    (front,) = [line for line in ax.lines if line.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == [10, 30, 90] and list(front.get_ydata()) == [30.0, 38.9, 39.0]
    assert ax.get_xlabel() == "beam_steps (lower is cheaper)" and ax.get_ylabel() == "bleu"
    assert cost_plot(ranking(rows), tmp_path / "none.png") is None  # no front asked: no cost to draw
    assert not (tmp_path / "none.png").exists()


# ------------------------------------------------------------------------------------------------ the decode trainable


def test_decode_trials_report_their_own_output_steps_and_cost(model_dir, tmp_path):  # noqa: F811
    from search.corpora import load_pairs
    from search.decoding import source_batches
    from search.trainables import decode as decode_module
    from search.trainables.decode_config import SETTING_DEFAULTS

    grid = {"num_beams": [1, 3], "length_penalty": [-1.0, 0.5, 2.0], "early_stopping": [True, False, "never"]}
    config = base(model_dir, tmp_path, grid)
    settings = {**SETTING_DEFAULTS, "cache_dir": str(tmp_path)}
    model, tokenizer = decode_module.load(model_dir, settings, DATA)
    batches = source_batches(tokenizer, load_pairs(DATA, "dev", limit=12).sources, 5, 128)
    seen = set()
    for nb in grid["num_beams"]:
        for lp in grid["length_penalty"]:
            for es in grid["early_stopping"]:
                args = {"num_beams": nb, "length_penalty": lp, "early_stopping": es}
                metrics = decode_module.run({**config, **args})
                steps, generated = 0, 0
                for _, inputs in batches:
                    with torch.no_grad():
                        out = model.generate(**inputs, **args, max_new_tokens=12, max_length=None, output_scores=True,
                                             return_dict_in_generate=True)  # fmt: skip
                    steps += len(out.scores)  # one score tensor per decoder step generate() ran
                    generated += out.sequences.shape[1] - 1  # the output length after the decoder start token
                # exactly the steps generate() ran for this config alone, though the trial shared a longer pass
                assert metrics["decoder_steps"] == steps, args
                assert metrics["beam_steps"] == nb * steps
                # greedy stops when its output ends; a beam search may run on after its best output finished
                assert steps == generated if nb == 1 else steps >= generated
                seen.add(steps)
                pass_seconds = metrics["sentences"] / metrics["sentences_per_s"]
                assert 0 < metrics["est_seconds"] <= pass_seconds * (1 + 1e-9)
    assert len(seen) >= 3  # the configs of one pass stop at different steps, and each reports its own


# ------------------------------------------------------------------------------------------------ through Ray Tune


SWEEP = """
method: grid
metric: {name: bleu, goal: maximize}
trainable: TOY:toy_decode
settings: {report_cost: true}
parameters:
  num_beams: {values: [NUM_BEAMS]}
  length_penalty: {value: 1.0}
  early_stopping: {value: false}
"""


@pytest.mark.ray
def test_export_prefers_the_fastest_tied_config(run_sweep, tiny_model, tmp_path, capsys, figures):
    from search.__main__ import main

    _, run_dir = run_sweep(SWEEP.replace("NUM_BEAMS", "1, 4, 8"))
    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    assert main(["export", str(run_dir), "--to", str(model), "--prefer", "fastest-tied"]) == 0
    out = capsys.readouterr().out
    assert "best on bleu (max):" in out and "(num_beams=8): bleu=" in out and "beam_steps=80" in out
    assert "exported the fastest tied:" in out and "2x cheaper in beam_steps" in out
    assert json.loads((model / GENERATION_FILE).read_text())["num_beams"] == 4  # 8 won on BLEU; 4 ties it
    assert main(["export", str(run_dir), "--to", str(model)]) == 0  # --prefer best: the winner
    assert "num_beams: 4 -> 8" in capsys.readouterr().out
    assert main(["rank", str(run_dir), "--pareto", "--format", "csv"]) == 0
    fronts = {(r["num_beams"], r["front"]) for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert fronts == {("1", "True"), ("4", "True"), ("8", "True")}  # each more beams is dearer and better
    assert main(["plot", str(run_dir)]) == 0
    cost_png = Path(run_dir).resolve() / "plots" / "cost.png"
    assert f"wrote {cost_png}" in capsys.readouterr().out
    (ax,) = figures.of(cost_png).axes
    tied = next(c for c in ax.collections if c.get_label() == "tied with the best").get_offsets().tolist()
    assert sorted(x for x, _ in tied) == [40, 80]  # 4 and 8 beams; greedy is worse
    assert main(["export", str(run_dir), "--to", str(model), "--prefer", "fastest-tied", "--trial", "x"]) == 2
    assert "--prefer: fastest-tied picks the trial itself" in capsys.readouterr().err


@pytest.mark.ray
def test_export_fastest_tied_takes_the_best_when_nothing_ties(run_sweep, tiny_model, tmp_path, capsys):
    from search.__main__ import main

    _, run_dir = run_sweep(SWEEP.replace("NUM_BEAMS", "1, 8"))
    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    assert main(["export", str(run_dir), "--to", str(model), "--prefer", "fastest-tied"]) == 0
    out = capsys.readouterr().out
    assert "exported the best: no config tied with it (of 1) is cheaper in beam_steps" in out
    assert json.loads((model / GENERATION_FILE).read_text())["num_beams"] == 8


def test_pipeline_prefer_key_is_checked(tmp_path):
    from test_pipeline import pipeline_file

    from search.pipeline import load_pipeline

    with pytest.raises(SpecError, match="prefer: must be one of best, fastest-tied, got 'cheapest'"):
        load_pipeline(pipeline_file(tmp_path, prefer="cheapest"))
    assert load_pipeline(pipeline_file(tmp_path, prefer="fastest-tied")).prefer == "fastest-tied"
