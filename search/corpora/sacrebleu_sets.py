"""sacreBLEU's test sets through sacreBLEU's own dataset API and cache, as the FSMT porting post scored wmt19::

    data: {sacrebleu: wmt19, langpair: ru-en}

sacreBLEU serves test sets only: our ``dev`` and ``test`` splits both read the named set (search decoding
parameters on one set, e.g. wmt18, and report on another by running the sweep again with ``--set
data.sacrebleu=wmt19``); ``train`` is an error. A set with several references is read with its first.
The cache is sacreBLEU's (``$SACREBLEU``, default ``~/.sacrebleu``, read when sacreBLEU is imported); a set that is
not there is downloaded, which needs internet.
"""

from __future__ import annotations

import difflib

from search.corpora.pairs import Pairs, checked
from search.errors import DataError

KEYS = {"sacrebleu", "langpair"}
SERVED_SPLITS = ("dev", "test")  # both read the one test set named


def validate(data: dict, file: str) -> None:
    """Keys, a test set sacreBLEU knows (did-you-mean) and a language pair it offers (listed)."""
    from sacrebleu import DATASETS

    name = data["sacrebleu"]
    if not isinstance(name, str) or name not in DATASETS:
        close = difflib.get_close_matches(str(name), list(DATASETS), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "`sacrebleu --list` lists them"
        raise DataError(file, "data.sacrebleu", f"unknown sacreBLEU test set {name!r}; {hint}")
    langpair = data.get("langpair")
    if langpair is None:
        raise DataError(file, "data.langpair", f"missing; {name} needs one of: {', '.join(DATASETS[name].langpairs)}")
    if langpair not in DATASETS[name].langpairs:
        offered = ", ".join(DATASETS[name].langpairs)
        raise DataError(file, "data.langpair", f"{name} has no language pair {langpair!r}; it offers: {offered}")


def load(data: dict, split: str, file: str) -> Pairs:
    """The test set's sources and first references, for ``dev`` or ``test``."""
    from sacrebleu import DATASETS
    from sacrebleu.utils import SACREBLEU_DIR

    name, langpair = data["sacrebleu"], data["langpair"]
    if split not in SERVED_SPLITS:
        raise DataError(
            file,
            "data.sacrebleu",
            f"sacreBLEU serves test sets only, no {split} split; give training data another way (data.hub, "
            "data.disk, files) or use a pretrained model, which needs none",
        )
    dataset = DATASETS[name]
    try:
        sources = list(dataset.source(langpair))
        references = [refs[0].strip() for refs in dataset.references(langpair)]
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a failed download exits; either way the set is missing
        cause = " ".join(str(error).split())[:160]
        raise DataError(
            file,
            "data.sacrebleu",
            f"{name} {langpair} is not in the sacreBLEU cache SACREBLEU={SACREBLEU_DIR} and could not be "
            f"downloaded ({type(error).__name__}: {cause}); run `sacrebleu -t {name} -l {langpair} --echo src` "
            "where there is internet and copy that cache here",
        ) from None
    label = f"sacrebleu:{name}/{langpair}"
    return checked(sources, references, label, file, "data.sacrebleu", f"{label} source", f"{label} reference")


class SacrebleuSource:
    """``{sacrebleu: NAME, langpair: SRC-TGT}``: this module's checks and loader as a data source."""

    key = "sacrebleu"
    keys = KEYS
    validate = staticmethod(validate)
    load = staticmethod(load)


__all__ = ["KEYS", "SERVED_SPLITS", "SacrebleuSource", "load", "validate"]
