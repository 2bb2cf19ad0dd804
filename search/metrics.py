"""Corpus-level metrics chosen by name, each reported with its signature, and a paired bootstrap test for each.

``METRICS`` maps a name (a valid Tune result key and YAML ``metric.name``) to a :class:`Metric`:

- ``bleu``, ``chrf``, ``chrfpp`` (chrF++: chrF with word bigrams, ``word_order=2``) and ``ter`` are sacreBLEU's, with
  sacreBLEU's signature and sacreBLEU's own paired bootstrap test (``sacrebleu.significance.PairedTest``);
- ``rouge1``, ``rouge2``, ``rougeL`` and ``rougeLsum`` are Google's ``rouge-score`` package: the mean F-measure of
  the sentences, x 100 (the scale of BLEU); their bootstrap resamples those per-sentence scores in the same way.

A trainable reports ``<name>`` and ``<name>_signature`` for every metric it computes (:func:`corpus_scores`); the
ranking shows that signature once in the table's header. ``ter`` is the one metric to minimize.

Example:
    >>> scores = corpus_scores(["the cat sat on the mat"], ["the cat sat on a mat"], ("bleu", "rougeL", "ter"))
    >>> round(scores["rougeL"], 2), round(scores["ter"], 2), scores["ter_signature"].split("|")[1]
    (83.33, 16.67, 'case:lc')
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER

from search.errors import SpecError

DEFAULT_METRICS = ("bleu", "chrf")  # cheap, and what the ranking and exports have always shown
DEFAULT_RESAMPLES = 1000  # sacreBLEU's default for paired bootstrap resampling
DEFAULT_ALPHA = 0.05
DEFAULT_SEED = 12345  # sacreBLEU's default seed of the resampling
GOALS = {"maximize": "max", "minimize": "min"}


@dataclass(frozen=True)
class BootstrapResult:
    p_values: dict[str, float]  # system name -> p-value of the difference to the baseline
    signature: str  # the test's signature, e.g. sacreBLEU's "nrefs:1|bs:1000|seed:12345|case:mixed|...|version:2.6.0"
    n_samples: int


def _check_lengths(hypotheses: list[str], references: list[str], name: str = "") -> None:
    if len(hypotheses) != len(references):
        prefix = f"{name}: " if name else ""
        raise ValueError(f"{prefix}got {len(hypotheses)} hypotheses for {len(references)} references")


@dataclass(frozen=True)
class Metric:
    """A corpus metric: its name, goal, score with signature, and paired bootstrap test."""

    name: str
    goal: str  # maximize | minimize
    tester: str  # who runs the paired bootstrap, named in the ranking's note

    @property
    def mode(self) -> str:
        """Ray Tune's mode of the goal: ``max`` or ``min``."""
        return GOALS[self.goal]

    def compute(self, hypotheses: list[str], references: list[str]) -> tuple[float, str]:
        """``(corpus score, signature)`` of ``hypotheses`` against one reference each."""
        raise NotImplementedError

    def bootstrap(
        self, baseline: list[str], systems: dict[str, list[str]], references: list[str], n_samples: int, seed: int
    ) -> BootstrapResult:
        """p-values of the paired bootstrap test of each system vs ``baseline`` (``systems`` is not empty)."""
        raise NotImplementedError


@dataclass(frozen=True)
class SacreMetric(Metric):
    """A sacreBLEU metric; ``make(**kwargs)`` builds its sacreBLEU object (``BLEU``, ``CHRF(word_order=2)``, ``TER``)."""

    make: Callable[..., Any] = BLEU

    def compute(self, hypotheses: list[str], references: list[str]) -> tuple[float, str]:
        metric = _scorer(self, tuple(references)) if references else self.make()
        return metric.corpus_score(hypotheses, None if references else [references]).score, str(metric.get_signature())

    def bootstrap(
        self, baseline: list[str], systems: dict[str, list[str]], references: list[str], n_samples: int, seed: int
    ) -> BootstrapResult:
        from sacrebleu.significance import PairedTest

        # PairedTest reads its seed from the environment when it is built; set it for that moment only.
        previous = os.environ.get("SACREBLEU_SEED")
        os.environ["SACREBLEU_SEED"] = str(seed)
        try:
            test = PairedTest(
                [("__baseline__", baseline), *systems.items()],
                {self.name: self.make()},
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
        (key,) = [k for k in scores if k != "System"]  # sacreBLEU names it by the score: "BLEU", "chrF2++", "TER"
        names = scores["System"][1:]
        p_values = {name: float(result.p_value) for name, result in zip(names, scores[key][1:], strict=True)}
        return BootstrapResult(p_values=p_values, signature=str(signatures[key]), n_samples=n_samples)


@functools.lru_cache(maxsize=8)
def _scorer(metric: SacreMetric, references: tuple[str, ...]) -> Any:
    """``metric``'s sacreBLEU object with the statistics of ``references`` computed once (sacreBLEU's reference
    cache): the trials of a sweep score the same references over and over, and preparing them each time made a
    decode trial's BLEU and chrF of 300 sentences cost 0.27 s instead of 0.16 s. Scores and signatures are those of
    ``corpus_score(hypotheses, [references])``."""
    return metric.make(references=[list(references)])


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # rougeLsum's sentence split: nltk's punkt would need a download


@functools.cache
def _rouge_scorer(rouge_type: str):
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([rouge_type], use_stemmer=True)  # stemming: as the summarization literature reports ROUGE


@dataclass(frozen=True)
class RougeMetric(Metric):
    """A ROUGE F-measure of the ``rouge-score`` package: the mean over sentences, x 100."""

    def signature(self) -> str:
        """The settings the score depends on, in sacreBLEU's style."""
        from importlib.metadata import version

        parts = ["nrefs:1", "stem:yes", "tok:rouge-score(lowercase,a-z0-9)", "agg:mean-f"]
        if self.name == "rougeLsum":
            parts.append("lsum-split:[.!?]+space")
        return "|".join([*parts, f"version:rouge-score-{version('rouge-score')}"])

    def sentence_scores(self, hypotheses: list[str], references: list[str]) -> np.ndarray:
        """The F-measure of each sentence, x 100; shape (sentences,)."""
        _check_lengths(hypotheses, references)
        scorer = _rouge_scorer(self.name)
        split = self.name == "rougeLsum"
        scores = [
            scorer.score(_lines(ref) if split else ref, _lines(hyp) if split else hyp)[self.name].fmeasure
            for hyp, ref in zip(hypotheses, references, strict=True)
        ]
        return 100.0 * np.asarray(scores, dtype=float)

    def compute(self, hypotheses: list[str], references: list[str]) -> tuple[float, str]:
        scores = self.sentence_scores(hypotheses, references)
        return (float(scores.mean()) if len(scores) else 0.0), self.signature()

    def bootstrap(
        self, baseline: list[str], systems: dict[str, list[str]], references: list[str], n_samples: int, seed: int
    ) -> BootstrapResult:
        base = self.sentence_scores(baseline, references)[:, None]
        p_values = {
            name: bootstrap_p_value(base, self.sentence_scores(hyps, references)[:, None], _mean, n_samples, seed)
            for name, hyps in systems.items()
        }
        return BootstrapResult(p_values, f"bs:{n_samples}|seed:{seed}|{self.signature()}", n_samples)


def _lines(text: str) -> str:
    return "\n".join(_SENTENCE_END.split(text.strip()))


def _mean(sums: np.ndarray, n: int) -> float:
    return float(sums[0]) / n


def bootstrap_p_value(
    baseline: np.ndarray, system: np.ndarray, score: Callable[[np.ndarray, int], float], n_samples: int, seed: int
) -> float:
    """sacreBLEU's paired bootstrap (``significance._paired_bs_test``) on per-sentence statistics.

    The same resampled sentence indices serve both systems; the p-value is the share of resamples whose centred
    absolute difference exceeds the observed one, ``(count + 1) / (n_samples + 1)``.

    Args:
        baseline, system: statistics of each sentence, shape (sentences, k).
        score: ``score(column sums, sentences)``: the corpus score of summed statistics.
        n_samples: resamples.
        seed: of numpy's generator, as sacreBLEU seeds it.
    """
    n = len(baseline)
    idxs = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    observed = abs(score(baseline.sum(0), n) - score(system.sum(0), n))
    diffs = np.abs(
        np.array([score(s.sum(0), n) for s in system[idxs]]) - np.array([score(s.sum(0), n) for s in baseline[idxs]])
    )
    count = int(np.sum(diffs - diffs.mean() > observed))
    return (count + 1) / (n_samples + 1)


METRICS: dict[str, Metric] = {
    "bleu": SacreMetric("bleu", "maximize", "sacreBLEU", BLEU),
    "chrf": SacreMetric("chrf", "maximize", "sacreBLEU", CHRF),
    "chrfpp": SacreMetric("chrfpp", "maximize", "sacreBLEU", functools.partial(CHRF, word_order=2)),  # chrF++
    "ter": SacreMetric("ter", "minimize", "sacreBLEU", TER),
    **{
        name: RougeMetric(name, "maximize", "sacreBLEU's test on per-sentence ROUGE")
        for name in ("rouge1", "rouge2", "rougeL", "rougeLsum")
    },
}


def check_metric_names(names: Any, file: str, key: str = "settings.metrics") -> tuple[str, ...]:
    """``names`` as a tuple, checked: a list of ``METRICS`` names.

    Raises:
        SpecError: one line naming ``file``, ``key``, the bad value and the valid names.
    """
    valid = ", ".join(METRICS)
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise SpecError(file, key, f"must be a list of metric names ({valid}), got {names!r}")
    for name in names:
        if name not in METRICS:
            hint = "; chrF++ is chrfpp" if str(name).lower() in ("chrf++", "chrf+", "chrfplusplus") else ""
            raise SpecError(file, key, f"unknown metric {name!r}; valid: {valid}{hint}")
    return tuple(dict.fromkeys(names))


def computed_metrics(requested: Any, sweep: Iterable[str] | None, file: str) -> tuple[str, ...]:
    """The metrics a trial computes: ``settings.metrics`` (checked), then each name of ``sweep`` (the sweep's metric
    and columns, set by the runner) that is a metric here; other names there are other reported keys.

    Example:
        >>> computed_metrics(["bleu"], ["rougeL", "eval_loss"], "s.yaml")
        ('bleu', 'rougeL')
    """
    names = check_metric_names(requested, file)
    return tuple(dict.fromkeys([*names, *(n for n in (sweep or ()) if n in METRICS)]))


def corpus_scores(hypotheses: list[str], references: list[str], metrics: Iterable[str] = DEFAULT_METRICS) -> dict:
    """Each metric of ``hypotheses`` against one reference each, with its signature.

    Returns:
        ``{name: float, name_signature: str}`` for each name of ``metrics`` (default: ``bleu`` and ``chrf``).

    Example:
        >>> corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"]
        100.00000000000004
    """
    _check_lengths(hypotheses, references)
    out: dict[str, Any] = {}
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}")
        out[name], out[f"{name}_signature"] = METRICS[name].compute(hypotheses, references)
    return out


def paired_bootstrap(
    baseline: list[str],
    systems: dict[str, list[str]],
    references: list[str],
    *,
    metric: str = "bleu",
    n_samples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> BootstrapResult:
    """p-values of the paired bootstrap test of each system vs a baseline, for any metric of ``METRICS``.

    For sacreBLEU's metrics this is sacreBLEU's own test (``PairedTest``, ``test_type="bs"``), which resamples the
    sentences' statistics; for ROUGE the same test on the per-sentence F-measures (:func:`bootstrap_p_value`). The
    test resamples the sentences ``n_samples`` times and asks how often the difference of corpus scores is at least
    as large as the observed one (Koehn 2004, as Moses' ``bootstrap-hypothesis-difference-significance.pl``); it is
    two-sided, so it serves a metric to minimize (TER) as well.

    sacreBLEU counts only resampled differences strictly larger than the observed one, so a system identical to the
    baseline gets the smallest p-value, ``1 / (n_samples + 1)``: compare identical outputs before calling this.

    Args:
        baseline: the baseline's outputs (the best-ranked system).
        systems: name -> outputs of each system compared with the baseline.
        references: one reference per sentence.
        metric: a name of ``METRICS``.
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
    if metric not in METRICS:
        raise ValueError(f"paired bootstrap supports {', '.join(METRICS)}, got {metric!r}")
    _check_lengths(baseline, references)
    for name, hyps in systems.items():
        _check_lengths(hyps, references, name)
    if not systems:
        return BootstrapResult(p_values={}, signature="", n_samples=n_samples)
    return METRICS[metric].bootstrap(baseline, systems, references, n_samples, seed)
