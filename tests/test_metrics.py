"""Metrics by name: each equals its library's own score, carries its signature, is selected by settings.metrics, and
has a paired bootstrap that tells a worse system from a tied one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import REFERENCES, translations
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF, TER

from search.errors import SpecError
from search.metrics import (
    DEFAULT_METRICS,
    METRICS,
    bootstrap_p_value,
    check_metric_names,
    corpus_scores,
    paired_bootstrap,
)
from search.report import Ranking, Row, mark_ties, order_rows

HYPS = ["The cat sat on the mat. It purred.", "a dog ran far away", "Rain falls in Spain", ""]
REFS = ["The cat was sitting on the mat. It was purring loudly.", "the dog runs away", "The rain in Spain", "no output"]
SACRE = {"bleu": BLEU, "chrf": CHRF, "chrfpp": lambda: CHRF(word_order=2), "ter": TER}


@pytest.mark.parametrize("name", list(SACRE))
def test_sacrebleu_metrics_equal_sacrebleu(name):
    scores = corpus_scores(HYPS, REFS, [name])
    metric = SACRE[name]()
    assert scores[name] == metric.corpus_score(HYPS, [REFS]).score
    assert scores[f"{name}_signature"] == str(metric.get_signature())
    assert set(scores) == {name, f"{name}_signature"}


WORDS = st.sampled_from(["the", "cat", "sat", "on", "mat", "a", "dog", ".", "Rain", "in", "Spain", "runs", "¿qué?"])
SENTENCES = st.lists(WORDS, max_size=8).map(" ".join)


@settings(max_examples=30, deadline=None)
@given(pairs=st.lists(st.tuples(SENTENCES, SENTENCES, SENTENCES), min_size=1, max_size=12))
def test_scores_against_references_seen_before_equal_sacrebleus(pairs):
    """The trials of a sweep score many systems against the same references (cached once per process): every
    system's score and signature stay those of a fresh sacreBLEU object."""
    refs, first, second = (list(column) for column in zip(*pairs, strict=True))
    for hyps in (first, second, first):
        for name, make in SACRE.items():
            metric = make()
            expected = (metric.corpus_score(hyps, [refs]).score, str(metric.get_signature()))
            assert METRICS[name].compute(hyps, list(refs)) == expected


@pytest.mark.parametrize("name", ["rouge1", "rouge2", "rougeL"])
def test_rouge_is_the_mean_f_measure_of_rouge_score_with_stemming(name):
    scorer = RougeScorer([name], use_stemmer=True)
    direct = [scorer.score(ref, hyp)[name].fmeasure for hyp, ref in zip(HYPS, REFS, strict=True)]
    assert corpus_scores(HYPS, REFS, [name])[name] == pytest.approx(100 * np.mean(direct))


def test_rouge_lsum_splits_sentences_on_final_punctuation():
    hyps, refs = ["The dog barks! The cat sleeps."], ["The cat sleeps. The dog barks?"]
    scorer = RougeScorer(["rougeLsum"], use_stemmer=True)
    split = scorer.score("The cat sleeps.\nThe dog barks?", "The dog barks!\nThe cat sleeps.")["rougeLsum"].fmeasure
    assert split == 1.0 and scorer.score(refs[0], hyps[0])["rougeLsum"].fmeasure == 0.5  # unsplit: one long sentence
    assert corpus_scores(hyps, refs, ["rougeLsum", "rougeL"]) | {"rougeLsum_signature": 0, "rougeL_signature": 0} == {
        "rougeLsum": 100.0, "rougeL": 50.0, "rougeLsum_signature": 0, "rougeL_signature": 0,
    }  # fmt: skip


def test_signatures_name_the_settings():
    scores = corpus_scores(HYPS, REFS, list(METRICS))
    assert "nw:2" in scores["chrfpp_signature"] and "nw:0" in scores["chrf_signature"]
    assert "tok:tercom" in scores["ter_signature"]
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        signature = scores[f"{name}_signature"]
        assert "stem:yes" in signature and signature.endswith("version:rouge-score-0.1.2")
        assert ("lsum-split" in signature) == (name == "rougeLsum")


def test_goals():
    assert {n: m.goal for n, m in METRICS.items() if m.goal != "maximize"} == {"ter": "minimize"}
    assert METRICS["ter"].mode == "min" and METRICS["bleu"].mode == "max"
    perfect = corpus_scores(REFS, REFS, list(METRICS))
    assert perfect["ter"] == 0.0 and all(perfect[n] > 99.9 for n in METRICS if n != "ter")


def test_names_are_checked_with_the_valid_ones_listed():
    assert check_metric_names(["rougeL", "bleu", "rougeL"], "s.yaml") == ("rougeL", "bleu")
    with pytest.raises(SpecError, match=r"s.yaml: settings.metrics: unknown metric 'chrf\+\+'; valid: bleu, .*chrfpp"):
        check_metric_names(["chrf++"], "s.yaml")
    with pytest.raises(SpecError, match="settings.metrics: must be a list of metric names"):
        check_metric_names("bleu", "s.yaml")
    with pytest.raises(ValueError, match="unknown metric 'meteor'"):
        corpus_scores(HYPS, REFS, ["meteor"])


CONFIG = {"model": "m", "data": {"corpus": "bible-en-es"}}


def _decode_metrics(settings: dict) -> list[str]:
    from search.trainables.decode_config import resolve_settings

    return resolve_settings({**CONFIG, "settings": settings}, "s.yaml")["metrics"]


def _finetune_metrics(settings: dict) -> list[str]:
    from search.trainables.finetune_config import resolve_config

    return resolve_config({**CONFIG, "settings": settings}, "s.yaml").settings["metrics"]


@pytest.mark.parametrize("resolve", [_decode_metrics, _finetune_metrics], ids=["decode", "finetune"])
def test_settings_select_the_metrics_plus_the_sweeps(resolve):
    assert resolve({}) == list(DEFAULT_METRICS)
    assert resolve({"metrics": ["rougeL", "ter"]}) == ["rougeL", "ter"]
    # the runner names the sweep's metric and columns: those that are metrics are computed too, other keys ignored
    assert resolve({"metrics": ["bleu"], "sweep_metrics": ["rouge2", "sentences_per_s", "eval_loss"]}) == [
        "bleu",
        "rouge2",
    ]
    with pytest.raises(SpecError, match=r"s.yaml: settings.metrics: unknown metric 'rouge3'; valid: bleu, chrf"):
        resolve({"metrics": ["rouge3"]})


def test_runner_tells_builtin_trainables_the_sweeps_metric_and_columns(tmp_path):
    from search.spec import validate
    from search.tune.plan import resolved_sections

    raw = {"method": "grid", "trainable": "decode", "metric": {"name": "rougeL", "goal": "maximize"}}
    spec = validate({**raw, "parameters": {"num_beams": {"values": [1, 2]}}, "columns": ["ter"]}, "s.yaml")
    assert resolved_sections(spec, tmp_path)["settings"]["sweep_metrics"] == ["rougeL", "ter"]
    unnamed = validate({"method": "grid", "trainable": "decode", "parameters": {"num_beams": {"values": [1]}}}, "s")
    assert resolved_sections(unnamed, tmp_path)["settings"]["sweep_metrics"] == ["bleu"]  # its PRIMARY_METRIC


# ----------------------------------------------------------------- paired bootstrap


@pytest.mark.parametrize("name", list(METRICS))
def test_bootstrap_finds_a_worse_system_worse_and_a_close_one_tied(name):
    best, close, worse = translations(0.0), translations(0.01), translations(0.4)
    result = paired_bootstrap(best, {"close": close, "worse": worse}, REFERENCES, metric=name, n_samples=200)
    assert result.p_values["worse"] < 0.05 < result.p_values["close"]
    assert "bs:200" in result.signature and "seed:12345" in result.signature


def test_rouge_bootstrap_is_sacrebleus_test_on_sentence_statistics():
    """The procedure ROUGE uses, fed chrF's sentence statistics, gives sacreBLEU's own p-value."""
    chrf = CHRF()
    best, other = translations(0.0), translations(0.05)
    stats = [np.array(chrf._extract_corpus_statistics(h, [REFERENCES]), dtype="float32") for h in (best, other)]

    def score(sums, n):
        return chrf._compute_score_from_stats(sums).score

    mine = bootstrap_p_value(stats[0], stats[1], score, 300, 12345)
    assert mine == pytest.approx(
        paired_bootstrap(best, {"o": other}, REFERENCES, metric="chrf", n_samples=300).p_values["o"]
    )


def _row(tmp_path: Path, trial_id: str, hyps: list[str], name: str) -> Row:
    path = tmp_path / trial_id
    path.mkdir()
    (path / "hypotheses.txt").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    (path / "references.txt").write_text("".join(r + "\n" for r in REFERENCES), encoding="utf-8")
    value = corpus_scores(hyps, REFERENCES, [name])[name]
    return Row(trial_id, "TERMINATED", 1, value, {"num_beams": len(trial_id)}, path=str(path))


@pytest.mark.parametrize("name", ["rougeL", "ter", "chrfpp"])
def test_ranking_ties_by_the_ranking_metric(tmp_path, name):
    mode = METRICS[name].mode
    rows = [_row(tmp_path, t, translations(e), name) for t, e in (("best", 0.0), ("same", 0.0), ("worse", 0.4))]
    r = Ranking(name, mode, "last", ("num_beams",), (), order_rows(rows, mode))
    marked = {row.trial_id: row for row in mark_ties(r, n_samples=200).rows}
    assert marked["worse"].tied is False and marked["same"].tied is True and marked["best"].tied is True
    assert {row.trial_id for row in mark_ties(r, n_samples=200).rows[:2]} == {"best", "same"}
