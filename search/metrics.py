"""Corpus-level scores with sacreBLEU, always with their signature."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def _check_lengths(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU and chrF of ``hypotheses`` against one reference each.

    Returns:
        ``{"bleu": float, "chrf": float, "bleu_signature": str, "chrf_signature": str}``

    Example:
        >>> corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"]
        100.00000000000004
    """
    _check_lengths(hypotheses, references)
    bleu, chrf = BLEU(), CHRF()
    return {
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "chrf": chrf.corpus_score(hypotheses, [references]).score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
