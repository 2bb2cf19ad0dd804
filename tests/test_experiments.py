"""Every experiment runs under --smoke-test, as CI's promise that the shipped sweeps and scripts work."""

from __future__ import annotations

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


@pytest.mark.ray
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_smoke(path: Path, ray_session, tmp_path: Path):
    from search.results import format_ranking, rank
    from search.runner import run
    from search.spec import load_spec

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
