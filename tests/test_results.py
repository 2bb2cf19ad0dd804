"""Ranking without Ray: bootstrap marks on trial directories, the row order, and every format."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import REFERENCES, translations

from search.errors import UserError
from search.metrics import corpus_scores, paired_bootstrap
from search.report import Ranking, Row, format_ranking, mark_ties, order_rows

SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def trial(tmp_path: Path, trial_id: str, hyps: list[str] | None, refs: list[str] | None = REFERENCES, **kw) -> Row:
    path = tmp_path / trial_id
    path.mkdir()
    if hyps is not None:
        (path / "hypotheses.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    if refs is not None:
        (path / "references.txt").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    value = corpus_scores(hyps, REFERENCES)["bleu"] if hyps is not None else kw.pop("value", None)
    fields = {"status": "TERMINATED", "training_iteration": 1, "params": {"num_beams": len(trial_id)}}
    return Row(trial_id=trial_id, value=value, path=str(path), **{**fields, **kw})


def ranking(rows: list[Row], metric: str = "bleu") -> Ranking:
    return Ranking(
        metric=metric, mode="max", scope="last", params=("num_beams",), columns=("chrf",),
        rows=order_rows(rows, "max"), signature=SIGNATURE,
    )  # fmt: skip


@pytest.fixture()
def marked(tmp_path):
    rows = [
        trial(tmp_path, "best", translations(0.0)),
        trial(tmp_path, "close", translations(0.01)),
        trial(tmp_path, "far", translations(0.3)),
        trial(tmp_path, "same", translations(0.0)),
        trial(tmp_path, "other_refs", translations(0.02), refs=REFERENCES[::-1]),
        trial(tmp_path, "stopped", translations(0.0), status="STOPPED"),
        trial(tmp_path, "broken", None, refs=None, status="ERROR", error="RuntimeError: boom"),
    ]
    return mark_ties(ranking(rows), n_samples=200)


def test_bootstrap_marks_tied_worse_and_identical_rows(marked):
    by_id = {r.trial_id: r for r in marked.rows}
    assert marked.best.trial_id in ("best", "same")
    assert by_id["close"].tied is True and by_id["close"].p_value >= 0.05
    assert by_id["far"].tied is False and by_id["far"].p_value < 0.05
    other = "same" if marked.best.trial_id == "best" else "best"
    assert by_id[other].tied is True and by_id[other].p_value == 1.0  # identical output: tied without a test
    # a trial scored on other references, a stopped one and an errored one are never compared
    assert by_id["other_refs"].tied is None and "other_refs" in " ".join(marked.notes)
    assert by_id["stopped"].tied is None and by_id["broken"].tied is None
    assert "200 resamples" in marked.bootstrap and "p >= 0.05" in marked.bootstrap and "bs:200" in marked.bootstrap


def test_bootstrap_p_values_are_sacrebleus(marked):
    by_id = {r.trial_id: r for r in marked.rows}
    direct = paired_bootstrap(translations(0.0), {"far": translations(0.3)}, REFERENCES, n_samples=200)
    assert by_id["far"].p_value == pytest.approx(direct.p_values["far"])


def test_stopped_and_errored_rows_come_last_and_never_win(marked):
    statuses = [r.status for r in marked.rows]
    assert statuses[-2:] == ["STOPPED", "ERROR"]
    assert marked.best.status == "TERMINATED"
    assert "stopped" not in {r.trial_id for r in marked.ranked}


def test_no_bootstrap_without_translations_or_for_other_metrics(tmp_path):
    rows = [trial(tmp_path, "a", None, refs=None, value=3.0), trial(tmp_path, "b", None, refs=None, value=2.0)]
    r = mark_ties(ranking(rows))
    assert r.bootstrap is None and all(row.tied is None for row in r.rows) and "no paired bootstrap" in r.notes[0]
    loss = mark_ties(ranking(rows, metric="eval_loss"))
    assert loss.bootstrap is None and loss.notes == ()


def test_markdown_shows_signature_once_and_the_test(marked):
    md = format_ranking(marked, "md")
    lines = md.splitlines()
    assert md.count(SIGNATURE) == 1 and SIGNATURE in lines[0]
    assert lines[2] == "| bleu | vs best | num_beams | chrf | trial_id | status | training_iteration |"
    assert any(line.startswith("| ") and "| best |" in line for line in lines)
    assert any("≈ p=" in line for line in lines) and any("< p=" in line for line in lines)
    assert "| STOPPED |" in md and "ERROR: RuntimeError: boom" in md
    assert "paired bootstrap" in lines[-2] or "paired bootstrap" in md.split("\n\n")[-1]


def test_csv_json_and_table_formats(marked):
    rows = list(csv.DictReader(io.StringIO(format_ranking(marked, "csv"))))
    assert list(rows[0]) == ["bleu", "p_value", "tied", "num_beams", "chrf", "trial_id", "status", "training_iteration"]
    far = next(r for r in rows if r["trial_id"] == "far")
    assert far["tied"] == "False" and float(far["p_value"]) < 0.05
    data = json.loads(format_ranking(marked, "json"))
    assert data["signature"] == SIGNATURE and "resamples" in data["bootstrap"]
    assert [r["trial_id"] for r in data["rows"]][-1] == "broken"
    table = format_ranking(marked, "table")
    assert "vs best" in table and SIGNATURE.split("|")[0] in table


def test_unknown_format_is_a_user_error(marked):
    with pytest.raises(UserError, match="--format: must be one of table, md, csv, json, got 'html'"):
        format_ranking(marked, "html")


def test_paired_bootstrap_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="got 1 hypotheses for 2 references"):
        paired_bootstrap(["a", "b"], {"x": ["a"]}, ["a", "b"])


# ------------------------------------------------------------------------------------------------ the terminal table

DECODE_PARAMS = ("checkpoint", "num_beams", "length_penalty", "early_stopping")
DECODE_COLUMNS = ("chrf", "mean_output_len", "identical_to", "sentences_per_s")
BOOTSTRAP = (
    "paired bootstrap vs the best (sacreBLEU, 1000 resamples, 300 sentences): ≈ tied with the best at p >= 0.05, "
    "< worse at p < 0.05; top 10 rows tested, on each trial's last translations; nrefs:1|bs:1000|seed:12345|"
    "case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
)


def decode_ranking(statuses: tuple[str, ...] = ()) -> Ranking:
    """The pipeline's decode table: 4 searched parameters, the tie mark and 4 extra metrics (13 columns in all)."""
    grid = [(c, nb, lp, es) for c in (0, 1) for nb in (5, 8, 11, 15) for lp in (0.6, 1.1) for es in (True, False)]
    rows = []
    for i, (c, nb, lp, es) in enumerate(grid):
        params = {"checkpoint": f"f0a1b2c3_0000{c}", "num_beams": nb, "length_penalty": lp, "early_stopping": es}
        columns = {"chrf": 45.123456 + i, "mean_output_len": 23.25, "identical_to": "", "sentences_per_s": 123.4567}
        status = statuses[i] if i < len(statuses) else "TERMINATED"
        rows.append(
            Row(f"9d8e7f6a_{i:05d}", status, 1, 39.2 - i / 7, params, columns, p_value=0.2 if i else None, tied=True)
        )
    return Ranking(
        metric="bleu", mode="max", scope="last", params=DECODE_PARAMS, columns=DECODE_COLUMNS,
        rows=order_rows(rows, "max"), signature=SIGNATURE, bootstrap=BOOTSTRAP,
    )  # fmt: skip


def headers(table: str) -> list[str]:
    """The header cells of a rich table (the line between ┃ borders)."""
    line = next(line for line in table.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def test_terminal_table_fits_120_columns_with_whole_headers():
    table = format_ranking(decode_ranking(), "table", width=120)
    assert max(len(line) for line in table.splitlines()) <= 120
    shown = headers(table)
    # the metric, the searched parameters in the spec's order, the tie mark, then what fits, each header whole
    assert shown[:6] == ["bleu", *DECODE_PARAMS, "vs best"]
    assert shown[6:] == ["trial", "chrf", "mean_output_len"]
    # the rest is named under the table; every trial finished and ran one iteration: no status, no iterations
    assert "not shown for width: identical_to, sentences_per_s (--columns all, --format csv)" in table
    first_row = next(line for line in table.splitlines() if line.startswith("│"))
    assert "trial: the trial_id after 9d8e7f6a_" in table and "│ 00000 │" in first_row
    assert SIGNATURE in table.replace("\n", "") and "1000 resamples" in table


def test_terminal_table_shows_status_only_when_a_trial_did_not_finish():
    ranking = decode_ranking(statuses=("ERROR",))
    table = format_ranking(replace(ranking, rows=tuple(replace(r, error="RuntimeError: boom") if r.status == "ERROR"
                                                         else r for r in ranking.rows)), "table", width=120)  # fmt: skip
    assert headers(table)[6:8] == ["trial", "status"] and max(len(line) for line in table.splitlines()) <= 120
    assert "9d8e7f6a_00000: RuntimeError: boom" in table  # the error line under the table, not in a cell
    assert "status" not in headers(format_ranking(decode_ranking(), "table", width=120))


def test_narrow_terminal_keeps_the_metric_parameters_and_tie_mark_whole():
    table = format_ranking(decode_ranking(), "table", width=90)
    assert headers(table) == ["bleu", *DECODE_PARAMS, "vs best"]
    assert max(len(line) for line in table.splitlines()) <= 90
    # narrower than those columns: they stay whole (the table is wider than asked), the notes wrap at the width
    narrow = format_ranking(decode_ranking(), "table", width=60)
    assert headers(narrow) == ["bleu", *DECODE_PARAMS, "vs best"]
    assert "f0a1b2c3_00001" in narrow and all(len(line) <= 60 for line in narrow.splitlines() if line[0] not in "┏┃┡│└")


def test_every_column_shows_all_and_csv_json_keep_every_column():
    table = format_ranking(decode_ranking(), "table", width=120, every_column=True)
    assert headers(table) == [
        "bleu", *DECODE_PARAMS, "vs best", "trial_id", "status", *DECODE_COLUMNS, "training_iteration",
    ]  # fmt: skip
    ranking = decode_ranking()
    rows = list(csv.DictReader(io.StringIO(format_ranking(ranking, "csv", width=40))))
    assert list(rows[0]) == ["bleu", "p_value", "tied", *DECODE_PARAMS, *DECODE_COLUMNS, "trial_id", "status",
                             "training_iteration"]  # fmt: skip
    assert len(rows) == len(ranking.rows) and rows[0]["sentences_per_s"] == "123.4567"
    data = json.loads(format_ranking(ranking, "json"))
    assert set(data["rows"][0]["columns"]) == set(DECODE_COLUMNS)


def test_rank_columns_all_on_the_command_line(tmp_path, monkeypatch, capsys):
    import search.report
    from search.__main__ import main

    asked = {}

    def fake_rank(run_dir, **kwargs):
        asked.update(kwargs)
        return decode_ranking()

    monkeypatch.setattr(search.report, "rank", fake_rank)
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["rank", str(tmp_path)]) == 0
    fitted = capsys.readouterr().out
    assert "sentences_per_s" not in headers(fitted) and max(len(line) for line in fitted.splitlines()) <= 120
    assert main(["rank", str(tmp_path), "--columns", "all"]) == 0
    assert asked["columns"] is None  # the spec's columns, every one shown
    assert headers(capsys.readouterr().out)[-5:] == [*DECODE_COLUMNS, "training_iteration"]
    assert main(["rank", str(tmp_path), "--columns", "chrf,all"]) == 0
    assert asked["columns"] == ("chrf",)
