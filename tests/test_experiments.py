"""Every experiment runs under --smoke-test, as CI's promise that the shipped sweeps and scripts work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.pipeline import is_pipeline

REPO = Path(__file__).resolve().parent.parent
# pipeline files chain sweeps; tests/test_pipeline.py runs the shipped one under --smoke-test
SWEEPS = sorted(p for p in (REPO / "experiments").glob("*.yaml") if not is_pipeline(yaml.safe_load(p.read_text())))
SCRIPTS = sorted(p for p in (REPO / "experiments").glob("*.py") if "--smoke-test" in p.read_text())
# what each script's smoke run prints, one pattern a stdout line: the check it is there for, not only its exit code
PRINTS = {
    # the shipped model on 8 sentences: both grids decode identically to generate(), the TPE search replayed from
    # recorded passes scores (and so samples) as it does with generate(), with fewer decoder steps; the CLI ran the grid
    "bench_decode": [
        *(
            rf"{n} configs, 8 sentences, 1 thread\(s\), model BLEU [1-9][0-9.]*: .*; limit [0-9.]+ s, fast/limit "
            rf"[0-9.]+ \(CPU time [0-9.]+\); BLEU identical: True \(tokens: True\); "
            for n in (8, 12)
        ),
        r"continuous: 6 TPE samples, 8 sentences, .*: decoder steps naive \d+, ours \d+, [0-9.]+x; .*; fallbacks 0; "
        r"scores identical: True; ",
        r"CLI: 8 configs, 8 sentences, .*: search run [0-9.]+ s, in-process one pass per num_beams [0-9.]+ s, "
        r"cli/in-process [0-9.]+$",
    ],
    # the Markdown table: a row per method, each with its trials and a utilisation; then the files it wrote
    "bench_hpo": [
        r"^\| method \| trials \| best dev BLEU \| winner's test BLEU \| trial CPU-min \| ",
        r"^\|---\|",
        *(
            rf"\| {method} \| 2 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 0\.\d+ \| "
            for method in ("grid", "random", r"bayes\+asha", "pbt")
        ),
        r"^$",
        r"^Seeds 0 \(1 repeat; .* Per trial: 20 steps of 1000 padded tokens",
        r"^ASHA's evidence: .* each report orders as the last one does: (report 1 [0-9.]+|no pair differs at the end)",
        r"^wrote .*table\.md, .*best_so_far\.png, .*results\.json$",
    ],
    "build_lead_corpus": [r"bible-lead: train 1200, dev 150, test 150 - rebuilt byte-identical$"],
    "build_bible_corpus": [
        r"bible-en-es: train \d+, dev \d+, test \d+ - checksums match$",
        r"bible-kjv-web: train \d+, dev \d+, test \d+ - checksums match$",
        r"clean_osis, normalise_rv1909: \d+ markup samples clean as expected$",
    ],
    "subsequence": [
        rf'{{"epoch": {epoch}, "train_loss": [0-9.e+-]+, "val_loss": [0-9.e+-]+, "val_accuracy": ' for epoch in (1, 2)
    ],
}


@pytest.mark.ray
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_smoke(path: Path, ray_session, tmp_path: Path):
    from search.report import format_ranking, rank
    from search.spec import load_spec
    from search.tune import run

    spec = load_spec(path, smoke_test=True)
    results, run_dir = run(spec, storage=str(tmp_path / "runs"), progress=False)
    assert not results.errors, [str(e)[:2000] for e in results.errors]
    ranking = rank(run_dir)
    assert ranking.best is not None and ranking.best.value is not None
    assert spec.metric.name in format_ranking(ranking, "md")


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_smoke(path: Path, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(path), "--smoke-test"], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == len(PRINTS[path.stem]), proc.stdout
    for pattern, line in zip(PRINTS[path.stem], lines, strict=True):
        assert re.match(pattern, line), (pattern, line)
