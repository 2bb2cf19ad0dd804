"""Corpus-level scores with sacreBLEU, always with their signature."""

from __future__ import annotations

from dataclasses import dataclass

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


BOOTSTRAP_METRICS = {"bleu": BLEU, "chrf": CHRF}
DEFAULT_RESAMPLES = 1000  # sacreBLEU's default for paired bootstrap resampling
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class BootstrapResult:
    p_values: dict[str, float]  # system name -> p-value of the difference to the baseline
    signature: str  # sacreBLEU's signature of the test, e.g. "nrefs:1|bs:1000|seed:12345|case:mixed|...|version:2.6.0"
    n_samples: int


def paired_bootstrap(
    baseline: list[str],
    systems: dict[str, list[str]],
    references: list[str],
    *,
    metric: str = "bleu",
    n_samples: int = DEFAULT_RESAMPLES,
    seed: int = 12345,
) -> BootstrapResult:
    """p-values of sacreBLEU's paired bootstrap test (``PairedTest``, ``test_type="bs"``) of each system vs a baseline.

    sacreBLEU counts only resampled differences strictly larger than the observed one, so a system identical to the
    baseline gets the smallest p-value, ``1 / (n_samples + 1)``: compare identical outputs before calling this.

    The test resamples the sentences ``n_samples`` times and asks how often the difference of corpus scores is at
    least as large as the observed one (Koehn 2004, as Moses' ``bootstrap-hypothesis-difference-significance.pl``).

    Args:
        baseline: the baseline's translations (the best-ranked system).
        systems: name -> translations of each system compared with the baseline.
        references: one reference per sentence.
        metric: ``bleu`` or ``chrf``.
        n_samples: number of bootstrap resamples.
        seed: seed of the resampling (sacreBLEU's own default is 12345).

    Returns:
        The p-value of each system (a large one: statistically tied with the baseline) and the test's signature.

    Example:
        >>> refs = ["the cat sat on the mat", "a dog ran"] * 5
        >>> hyps = ["the cat sat on a mat", "a dog ran"] * 5
        >>> round(paired_bootstrap(refs, {"other": hyps}, refs, n_samples=100).p_values["other"], 3)
        0.01
    """
    import os

    from sacrebleu.significance import PairedTest

    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"paired bootstrap supports {', '.join(BOOTSTRAP_METRICS)}, got {metric!r}")
    _check_lengths(baseline, references)
    for name, hyps in systems.items():
        if len(hyps) != len(references):
            raise ValueError(f"{name}: got {len(hyps)} hypotheses for {len(references)} references")
    if not systems:
        return BootstrapResult(p_values={}, signature="", n_samples=n_samples)
    # PairedTest reads its seed from the environment when it is built; set it for that moment only.
    previous = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        test = PairedTest(
            [("__baseline__", baseline), *systems.items()],
            {metric: BOOTSTRAP_METRICS[metric]()},
            [references],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, scores = test()
    finally:
        if previous is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = previous
    (key,) = [k for k in scores if k != "System"]  # sacreBLEU names it by the score: "BLEU", "chrF2"
    names = scores["System"][1:]
    p_values = {name: float(result.p_value) for name, result in zip(names, scores[key][1:], strict=True)}
    return BootstrapResult(p_values=p_values, signature=str(signatures[key]), n_samples=n_samples)
