"""Run directories: reading a finished run needs neither Ray nor the user's trainable, and written files get the
modes a user expects."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from search.files import atomic_write, publish_dir, staged_dir
from search.rundir import read_run, unique_run_dir

TRAINABLE = """
from ray import tune


def train(config):
    for step in range(1, 4):
        tune.report({"score": -((config["num_beams"] - 2) ** 2) + step, "step": step})
"""

# Runs in a fresh interpreter after the trainable's file has gone: rank, plot and export must still read the run,
# and must not have imported Ray to do it.
READER = """
import json, sys
from matplotlib.figure import Figure
from search.report import format_ranking, plot, rank
from search.export import export

curves, savefig = {}, Figure.savefig
def record(fig, fname, *args, **kwargs):  # the curves as drawn: each line's label and scores
    curves.update({line.get_label(): line.get_ydata().tolist() for line in fig.axes[0].get_lines()})
    return savefig(fig, fname, *args, **kwargs)
Figure.savefig = record

ranking = rank(sys.argv[1], bootstrap=0)
print(json.dumps({
    "best": ranking.best.params,
    "best_id": ranking.best.trial_id,
    "statuses": sorted(r.status for r in ranking.rows),
    "plots": [p.name for p in plot(sys.argv[1])],
    "curves": curves,
    "export": export(sys.argv[1], sys.argv[2], dry_run=True),
    "table": format_ranking(ranking, "md"),
    "imported": sorted(m for m in ("ray", "my_train", "hyperopt") if m in sys.modules),
}))
"""


@pytest.mark.ray
def test_rank_plot_and_export_read_a_run_without_ray_or_its_trainable(run_sweep, tmp_path):
    (tmp_path / "my_train.py").write_text(TRAINABLE)
    _, run_dir = run_sweep(
        "method: grid\nmetric: {name: score, goal: maximize}\ntrainable: my_train.py:train\n"
        "parameters: {num_beams: {values: [1, 2, 3]}, length_penalty: {value: 1.5}}\n"
    )
    (tmp_path / "my_train.py").rename(tmp_path / "moved_away.py")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bart", "vocab_size": 10, "d_model": 8}))

    proc = subprocess.run(
        [sys.executable, "-c", READER, str(run_dir), str(model)], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    assert out["best"] == {"num_beams": 2} and out["statuses"] == ["TERMINATED"] * 3
    assert out["plots"] == ["curves.png"]
    # the curves read every trial's reports: score -(num_beams - 2)^2 + step at steps 1..3, the winner's labelled best
    assert sorted(out["curves"].values()) == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
    assert out["curves"][f"{out['best_id']} (best)"] == [1.0, 2.0, 3.0]
    export = "\n".join(out["export"])  # the winner's searched and constant generate() arguments
    assert "num_beams: unset -> 2" in export and "length_penalty: unset -> 1.5" in export
    assert "| score | num_beams | trial_id | status | training_iteration |" in out["table"]


def test_a_run_directory_is_named_once(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep-2").mkdir()
    assert unique_run_dir(tmp_path, "sweep") == tmp_path / "sweep-3"
    assert unique_run_dir(tmp_path, "other") == tmp_path / "other"


def test_reading_a_directory_that_is_no_run_is_one_line(tmp_path):
    from search.errors import SpecError

    with pytest.raises(SpecError, match="not a run directory of ours: search_spec.yaml is missing"):
        read_run(tmp_path)


@pytest.fixture()
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_and_directories_get_the_umasks_mode(tmp_path, umask_027):
    """tempfile makes 0600 files and 0700 directories; what we write must be readable as the umask allows."""
    atomic_write(tmp_path / "new.txt", "x")
    assert _mode(tmp_path / "new.txt") == 0o640
    with staged_dir(tmp_path, "model") as staged:
        atomic_write(staged / "config.json", "{}")
        (staged / "weights").write_bytes(b"0")
        (staged / "weights").chmod(0o600)  # as transformers writes model.safetensors
        assert publish_dir(staged, tmp_path / "model") is None
    assert _mode(tmp_path / "model") == 0o750 and _mode(tmp_path / "model" / "config.json") == 0o640
    assert _mode(tmp_path / "model" / "weights") == 0o640


def test_publishing_over_a_directory_keeps_the_old_one_as_a_backup(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    with staged_dir(tmp_path, "model") as staged:
        (staged / "new.txt").write_text("new")
        backup = publish_dir(staged, tmp_path / "model")
    assert backup == tmp_path / "model.bak" and (backup / "old.txt").read_text() == "old"
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.txt"]


def test_a_replaced_file_keeps_its_mode_and_its_backup_the_old_text(tmp_path):
    target = tmp_path / "generation_config.json"
    target.write_text("old")
    target.chmod(0o664)
    backup = atomic_write(target, "new", backup=True)
    assert target.read_text() == "new" and _mode(target) == 0o664
    assert backup == tmp_path / "generation_config.json.bak" and backup.read_text() == "old"


def test_a_staged_directory_is_removed_when_filling_it_fails(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path, "model") as staged:
        (staged / "half").write_text("x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ray
def test_an_exported_model_directory_is_shared_readable(run_sweep, tmp_path, tiny_model, umask_027):
    """A fine-tune export: the model directory and every file in it as the umask gives (0750/0640), not 0700/0600."""
    from search.export import export

    _, run_dir = run_sweep(
        "method: grid\nmetric: {name: bleu, goal: maximize}\ntrainable: TOY:toy_train\n"
        f"parameters: {{lr: {{values: [0.2]}}}}\nsettings: {{steps: 2, sleep: 0, model_src: {tiny_model}}}\n"
    )
    export(run_dir, tmp_path / "exported")
    out = tmp_path / "exported"
    assert _mode(out) == 0o750
    modes = {p.name: _mode(p) for p in out.rglob("*") if p.is_file()}
    assert {"config.json", "best_hparams.yaml", "README.md", "model.safetensors"} <= set(modes)
    assert set(modes.values()) == {0o640}, modes
