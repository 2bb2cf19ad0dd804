"""Nothing lost, nothing leaked: bad data and models found before anything runs, errors that survive Ray, exit codes
a script can trust, only finished trials win, run directories claimed once, resumable runs, and no secret written."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.errors import DataError, Interrupted, RunError, SpecError, UserError
from search.report import Ranking, Row, order_rows
from search.rundir import check_resumable, claim_run_dir
from search.spec import load_spec, validate

HEAD = "method: grid\nmetric: {name: bleu, goal: maximize}\nparameters: {num_beams: {values: [1, 2]}}\n"
TINY = "model: {arch: bart, d_model: 32, layers: 1, heads: 2, ffn: 64, vocab_size: 400}\n"


# ------------------------------------------------------------------------------------------------ errors cross Ray


@pytest.mark.parametrize(
    "error",
    [SpecError("s.yaml", "run_cap", "must be >= 1"), DataError("s.yaml", "data.dev", "3 vs 4 lines"),
     Interrupted("/runs/x")],
)  # fmt: skip
def test_errors_pickle_and_copy_with_their_message(error):
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error) and str(clone) == str(error)


# ------------------------------------------------------------------------------------------------ data and models


def _plan_error(tmp_path: Path, body: str) -> str:
    from search.tune import plan

    path = tmp_path / "sweep.yaml"
    path.write_text(HEAD + "trainable: decode\n" + body)
    with pytest.raises(UserError) as caught:
        plan(load_spec(path), storage=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_unequal_source_and_reference_files_are_found_before_the_run(tmp_path):
    (tmp_path / "dev.en").write_text("a\nb\nc\n")
    (tmp_path / "dev.es").write_text("x\ny\n")
    message = _plan_error(tmp_path, TINY + "data: {dev: {source: dev.en, reference: dev.es}}\n")
    assert "data.dev: " in message and "has 3 lines but" in message


@pytest.mark.parametrize(
    ("files", "data", "expected"),
    [
        ({"dev.en": "", "dev.es": ""}, "{dev: {source: dev.en, reference: dev.es}}", "data.dev: "),
        ({"dev.tsv": "source\tother\nhello\thola\n"}, "{dev: dev.tsv}", "data.target_field: "),
        ({"dev.tsv": "source\ttarget\nhello\thola\nragged\n"}, "{dev: dev.tsv}", "data.dev: "),
        ({"dev.en": b"caf\xe9\n", "dev.es": "x\n"}, "{dev: {source: dev.en, reference: dev.es}}", "is not UTF-8"),
        ({"train.tsv": "source\ttarget\na\tb\n"}, "{train: train.tsv}", "data.dev: split 'dev' is needed"),
    ],
    ids=["empty", "missing-column", "ragged-row", "not-utf8", "no-dev-split"],
)
def test_bad_data_is_one_line_before_anything_runs(tmp_path, files, data, expected):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    message = _plan_error(tmp_path, TINY + f"data: {data}\n")
    assert expected in message


def test_a_model_directory_whose_config_does_not_load_is_found_before_the_run(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")
    message = _plan_error(tmp_path, "model: model\ndata: {corpus: bible-en-es}\n")
    assert "model: " in message and "config.json does not load" in message


def test_a_model_that_does_not_load_stops_search_run_while_ray_starts(tmp_path, monkeypatch):
    """`search run` loads the model's config and tokenizer while Ray starts (Plan.pending): the error is still one
    line before anything is written, and the Ray started for the run is shut down (nothing leaked)."""
    import ray

    from search.tune import runner

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(runner, "_init_ray", lambda address: calls.append("init"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")
    path = tmp_path / "sweep.yaml"
    path.write_text(HEAD + "trainable: decode\nmodel: model\ndata: {corpus: bible-en-es}\n")
    with pytest.raises(SpecError, match=r"model: .*config\.json does not load"):
        runner.run(load_spec(path), storage=str(tmp_path / "runs"), progress=False)
    assert calls == ["init", "shutdown"]
    assert not (tmp_path / "runs").exists()


def test_validate_on_bad_data_exits_2_with_one_line(tmp_path):
    (tmp_path / "dev.en").write_text("a\nb\n")
    (tmp_path / "dev.es").write_text("x\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(HEAD + "trainable: decode\n" + TINY + "data: {dev: {source: dev.en, reference: dev.es}}\n")
    proc = subprocess.run([sys.executable, "-m", "search", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{path}: data.dev: {tmp_path / 'dev.en'} has 2 lines but {tmp_path / 'dev.es'} has 1; "
        "the files must be line-aligned"
    ]


# ------------------------------------------------------------------------------------------------ ranking


def _row(trial_id: str, status: str, value: float | None) -> Row:
    return Row(trial_id, status, 3, value, {"x": 1})


def test_only_finished_trials_rank_and_win():
    rows = [
        _row("running", "RUNNING", 99.0), _row("pending", "PENDING", 98.0), _row("paused", "PAUSED", 97.0),
        _row("errored", "ERROR", 96.0), _row("stopped", "STOPPED", 95.0), _row("done", "TERMINATED", 10.0),
    ]  # fmt: skip
    ranking = Ranking("bleu", "max", "last", ("x",), (), order_rows(rows, "max"))
    assert ranking.best.trial_id == "done" and [r.trial_id for r in ranking.ranked] == ["done"]
    assert [r.trial_id for r in ranking.rows] == ["done", "stopped", "running", "pending", "paused", "errored"]


@pytest.mark.parametrize(
    ("scope", "expected"), [("last", None), ("best", 3.0), ("avg", 2.0)]
)  # fmt: skip
def test_a_nan_never_becomes_the_best(scope, expected):
    from search.report.ranking import _scoped

    history = [{"bleu": 1.0}, {"bleu": 3.0}, {"bleu": float("nan")}]
    assert _scoped(history, history[-1], "bleu", "max", scope) == expected
    assert _scoped([{"bleu": float("inf")}], {}, "bleu", "max", scope) is None


def test_progress_line_never_names_an_errored_or_nan_trial_the_best():
    from search.tune.progress import ProgressCallback

    trials = [
        SimpleNamespace(trial_id="err", status="ERROR", last_result={"bleu": 50.0}),
        SimpleNamespace(trial_id="nan", status="RUNNING", last_result={"bleu": float("nan")}),
        SimpleNamespace(trial_id="ok", status="TERMINATED", last_result={"bleu": 7.0}),
    ]
    value, trial = ProgressCallback("bleu", "max")._best(trials)
    assert (value, trial.trial_id) == (7.0, "ok")


def test_export_refuses_an_errored_trial_unless_forced(tmp_path):
    from search.export import export

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "search_spec.yaml").write_text(
        "file: sweep.yaml\nspec: {metric: {name: bleu, goal: maximize}, parameters: {num_beams: {values: [1]}}}\n"
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bart", "vocab_size": 10, "d_model": 8}))
    row = Row("t1", "ERROR", 1, 30.0, {"num_beams": 4}, error="RuntimeError: out of memory")
    ranking = Ranking("bleu", "max", "last", ("num_beams",), (), (row,))
    with pytest.raises(UserError, match=r"--trial: trial t1 errored \(RuntimeError: out of memory\); .* --force"):
        export(run_dir, model, trial="t1", rank_fn=lambda *a, **k: ranking)
    lines = export(run_dir, model, trial="t1", force=True, dry_run=True, rank_fn=lambda *a, **k: ranking)
    assert "  num_beams: unset -> 4" in lines


# ------------------------------------------------------------------------------------------------ run directories


def test_concurrent_claims_get_distinct_run_directories(tmp_path):
    claimed: list[Path] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        claimed.append(claim_run_dir(tmp_path, "sweep"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in claimed) == sorted(["sweep", *(f"sweep-{n}" for n in range(2, 9))])


def test_resume_refuses_a_run_ray_could_not_restore(tmp_path, monkeypatch):
    (tmp_path / "tuner.pkl").write_bytes(b"")
    with pytest.raises(RunError, match="tuner.pkl: empty"):
        check_resumable(tmp_path)
    (tmp_path / "tuner.pkl").write_bytes(b"x")
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [')
    with pytest.raises(RunError, match="damaged, and no good copy; resuming would start the sweep over"):
        check_resumable(tmp_path)
    monkeypatch.setattr("search.rundir.MIN_FREE", 1 << 62)  # more than any disk has free
    with pytest.raises(RunError, match=r"No space left on device \(errno 28\); free space, then resume"):
        check_resumable(tmp_path)


def test_resume_puts_back_the_good_copies_of_a_truncated_state(tmp_path):
    from search.rundir import GOOD_STATE, GOOD_TUNER, keep_good_state

    state = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [], "runner_data": {}}')
    (tmp_path / "tuner.pkl").write_bytes(b"tuner")
    assert keep_good_state(tmp_path)
    state.write_text('{"trial_data": [')  # a full disk cut Ray's rewrites short
    (tmp_path / "tuner.pkl").write_bytes(b"")
    assert not keep_good_state(tmp_path)  # a damaged snapshot never replaces the good copy
    repaired = check_resumable(tmp_path)
    assert [line.split(":")[0] for line in repaired] == [str(tmp_path / "tuner.pkl"), str(state)]
    assert (tmp_path / "tuner.pkl").read_bytes() == (tmp_path / GOOD_TUNER).read_bytes() == b"tuner"
    assert json.loads(state.read_text()) == json.loads((tmp_path / GOOD_STATE).read_text()) == {
        "trial_data": [], "runner_data": {}
    }  # fmt: skip


def test_the_state_keeper_tries_every_step_until_it_has_a_good_copy(tmp_path):
    from search.rundir import GOOD_STATE
    from search.tune.progress import StateKeeper

    state = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [')  # the disk filled while Ray wrote its first snapshot
    keeper = StateKeeper(tmp_path, every_s=3600.0)
    keeper.on_step_end(iteration=1, trials=[])
    assert not (tmp_path / GOOD_STATE).exists()
    state.write_text('{"trial_data": []}')  # Ray's next write got through
    keeper.on_step_end(iteration=2, trials=[])  # within the wait, but no copy was made yet
    assert json.loads((tmp_path / GOOD_STATE).read_text()) == {"trial_data": []}
    state.write_text('{"trial_data": [1]}')
    keeper.on_step_end(iteration=3, trials=[])  # now the wait applies
    assert json.loads((tmp_path / GOOD_STATE).read_text()) == {"trial_data": []}


def test_an_os_error_is_one_line_with_path_and_errno(tmp_path, monkeypatch, capsys):
    import search.report
    from search.__main__ import main

    def full(*args, **kwargs):
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/result.json")
        except OSError as cause:
            raise RuntimeError("Ray wrapped it") from cause

    monkeypatch.setattr(search.report, "rank", full)
    assert main(["rank", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "/runs/x/result.json: No space left on device (errno 28)\n"


# ------------------------------------------------------------------------------------------------ the spec contract

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    ["method", "metric", "parameters", "run_cap", "scheduler", "early_terminate", "resources", "seed", "name",
     "storage", "wandb", "model", "data", "settings", "columns", "checkpoint", "max_concurrent", "trainable", "bogus"]
)  # fmt: skip
_PARAM = st.dictionaries(
    st.sampled_from(["distribution", "value", "values", "min", "max", "q", "mu", "sigma", "a", "b", "when",
                     "probabilities", "parameters"]),
    _VALUES | st.sampled_from(["uniform", "q_beta", "log_uniform_values", "categorical", "int_uniform", "normal"]),
    max_size=4,
)  # fmt: skip
_SPECS = st.dictionaries(_KEYS, _VALUES, max_size=6) | st.fixed_dictionaries(
    {"method": st.sampled_from(["grid", "random", "bayes", "x"]),
     "metric": st.fixed_dictionaries({"name": st.text(max_size=4), "goal": st.sampled_from(["maximize", "up"])}),
     "parameters": st.dictionaries(st.text(max_size=4), _PARAM, max_size=3)}
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_SPECS)
def test_validate_returns_a_spec_or_raises_one_line(raw):
    try:
        spec = validate(raw, "sweep.yaml")
    except SpecError as error:
        assert "\n" not in str(error) and str(error).startswith("sweep.yaml: ")
    else:
        assert spec.parameters and spec.metric.mode in ("max", "min")


# ------------------------------------------------------------------------------------------------ through Ray

TOY = Path(__file__).resolve().parent / "toy_trainables.py"


@pytest.mark.ray
def test_a_sweep_where_every_trial_errored_exits_1_with_the_errors(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"method: grid\nmetric: {{name: score, goal: maximize}}\ntrainable: {TOY}:broken\n"
        "parameters: {x: {values: [2]}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", str(path), "--storage", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert err[-2:] == [
        "no trial finished with score: 1 trials, 1 errored",
        "  1 x RuntimeError: x=2 is broken on purpose",
    ]


@pytest.mark.ray
def test_no_wandb_key_is_written_by_an_offline_sweep(run_sweep, ray_session, monkeypatch, tmp_path):
    key = "searchtestkey" + "7" * 27
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    results, run_dir = run_sweep(
        "method: grid\nmetric: {name: score, goal: maximize}\ntrainable: TOY:quadratic\n"
        "wandb: {mode: offline, project: test}\nparameters: {x: {values: [3]}}\nsettings: {steps: 2}\n"
    )
    assert not results.errors and list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert os.environ["WANDB_API_KEY"] == key  # the driver's environment is left as it was
    session = Path(ray_session._private.worker._global_node.get_session_dir_path())
    for root in (run_dir, session):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert key.encode() not in path.read_bytes(), path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_sweep_says_how_to_resume_and_resumes(write_spec, tmp_path, sig):
    path = write_spec(
        "method: grid\nmetric: {name: score, goal: maximize}\ntrainable: TOY:quadratic\nmax_concurrent: 1\n"
        "parameters: {x: {values: [0, 1, 2, 3]}}\nsettings: {steps: 2, sleep: 1.0}\n"
    )
    storage = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(path), "--storage", str(storage)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if "finished:" in line or time.monotonic() > deadline:
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    run_dir = storage / "sweep"
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].endswith(f"continue with `search resume {run_dir}`")
    resumed = subprocess.run(
        [sys.executable, "-m", "search", "resume", str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from search.report import rank

    assert sorted(r.params["x"] for r in rank(run_dir).rows if r.status == "TERMINATED") == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_resumed_trial_whose_newest_checkpoint_is_gone_continues_from_an_older_one(write_spec, tmp_path):
    """A checkpoint the snapshot names but the disk lost (Ray deleted it after a snapshot a full disk kept stale):
    `search resume` says so and the trial continues from the newest checkpoint still there, not from its lost one
    (Ray's restore would fail the trial) and not from scratch."""
    path = write_spec(
        "method: grid\nmetric: {name: value, goal: maximize}\ntrainable: TOY:counter\ncheckpoint: {keep: 3}\n"
        "parameters: {lr: {values: [0.5]}}\nsettings: {steps: 8, sleep: 0.5}\n"
    )
    storage = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(path), "--storage", str(storage)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(storage.glob("sweep/*/checkpoint_000002")) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    run_dir = storage / "sweep"
    (trial_dir,) = [p.parent for p in run_dir.glob("*/params.json")]
    oldest, *newer = sorted(trial_dir.glob("checkpoint_*"))  # the snapshot's restore point is among the newer
    for checkpoint in newer:
        shutil.rmtree(checkpoint)
    resumed = subprocess.run(
        [sys.executable, "-m", "search", "resume", str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    line = rf"{re.escape(trial_dir.name)}: checkpoint_\d{{6}} is gone; the trial continues from {oldest.name}"
    assert any(re.fullmatch(line, ln) for ln in resumed.stderr.splitlines()), resumed.stderr[-2000:]
    from search.report import rank

    (row,) = rank(run_dir, bootstrap=0, columns=("started",)).rows
    assert row.status == "TERMINATED" and row.value == pytest.approx(8 * 0.5)
    assert row.columns["started"] == int(oldest.name.rsplit("_", 1)[1]) + 1  # checkpoint_00000k holds step k+1


FULL_DISK = """
set -u
mount -t tmpfs -o size=3m tmpfs "$DISK"
"$PY" -m search run "$SWEEP" --storage "$DISK/runs" > /dev/null 2> "$OUT/run.err"; echo $? > "$OUT/run.code"
mount -o remount,size=64m "$DISK"
"$PY" -m search resume "$DISK/runs/sweep" > /dev/null 2> "$OUT/resume.err"; echo $? > "$OUT/resume.code"
"$PY" -m search rank "$DISK/runs/sweep" --format json > "$OUT/rank.json"
"""
BIG_TRAINABLE = """
import os, tempfile
from ray import tune
from search.trainables import checkpointing


@checkpointing
def train(config):
    for step in range(1, 6):  # 5 checkpoints of 400 kB per trial: a 3 MB disk fills up
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "w.bin"), "wb") as f:
                f.write(os.urandom(400_000))
            tune.report({"score": config["x"] * step}, checkpoint=tune.Checkpoint.from_directory(d))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")
def test_a_full_disk_ends_in_one_line_and_the_run_resumes_once_there_is_space(tmp_path):
    """The storage on a 3 MB tmpfs (in a mount namespace of its own): the run exits 1 naming the disk and errno 28,
    and after the disk grows `search resume` finishes every trial instead of starting the sweep over."""
    (tmp_path / "big.py").write_text(BIG_TRAINABLE)
    (tmp_path / "sweep.yaml").write_text(
        "method: grid\nmetric: {name: score, goal: maximize}\ntrainable: big.py:train\n"
        # no retries: a retry on the full disk can start from a checkpoint it could not finish writing
        "parameters: {x: {values: [1, 2, 3, 4]}}\ncheckpoint: {keep: 3}\nmax_failures: 0\n"
    )
    disk = tmp_path / "disk"
    disk.mkdir()
    env = {**os.environ, "DISK": str(disk), "PY": sys.executable, "SWEEP": str(tmp_path / "sweep.yaml"),
           "OUT": str(tmp_path)}  # fmt: skip
    subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", FULL_DISK], env=env, timeout=600)
    run_dir = disk / "runs" / "sweep"
    assert (tmp_path / "run.code").read_text().strip() == "1"
    last = (tmp_path / "run.err").read_text().strip().splitlines()[-1]  # Ray logs the trials' failures before it
    # the path is the run directory, or the file a write failed on (Ray stages some files outside the run directory)
    pattern = rf"/\S*: .*\(errno 28\); free space, then `search resume {re.escape(str(run_dir))}`"
    assert re.fullmatch(pattern, last), last
    assert (tmp_path / "resume.code").read_text().strip() == "0", (tmp_path / "resume.err").read_text()[-2000:]
    rows = json.loads((tmp_path / "rank.json").read_text())["rows"]
    resumed = sorted((r["params"]["x"], r["status"], r["error"]) for r in rows)
    assert resumed == [(x, "TERMINATED", None) for x in (1, 2, 3, 4)], (tmp_path / "resume.err").read_text()[-3000:]


def test_a_uri_missing_a_slash_is_refused_instead_of_becoming_a_local_directory(write_spec, tmp_path):
    path = write_spec("method: grid\nmetric: {name: score, goal: maximize}\ntrainable: TOY:quadratic\n"
                      "parameters: {x: {values: [1]}}\n")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "search", "run", str(path), "--storage", "s3:/bucket/runs"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}: --storage: looks like a URI missing '//', got 's3:/bucket/runs'; write e.g. s3://bucket/runs"
    ]
    assert not (tmp_path / "s3:").exists()


def test_a_trial_that_still_fails_on_its_data_names_the_sweep_file(tmp_path):
    """The runner gives the built-in trainables the sweep file, named in the errors a trial raises."""
    from search.trainables.decode import decode_and_score
    from search.tune.plan import resolved_sections

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(HEAD + "trainable: decode\n" + TINY + "data: {dev: {source: dev.en, reference: dev.es}}\n")
    sections = resolved_sections(load_spec(sweep), tmp_path / "cache")
    assert sections["settings"]["spec_file"] == str(sweep)
    with pytest.raises(DataError) as caught:  # the files vanished after the sweep started
        decode_and_score({**sections, "num_beams": 2})
    assert str(caught.value).startswith(f"{sweep}: data.dev.source: file not found")


@pytest.mark.ray
@pytest.mark.parametrize("max_failures", [0, 2])
def test_a_trial_whose_worker_dies_continues_from_its_checkpoint(run_sweep, tmp_path, max_failures):
    """max_failures (Ray's FailureConfig): a worker that dies mid-trial is restarted from the trial's last checkpoint
    (the default allows it); with max_failures: 0 the trial errors and the others still finish."""
    from search.report import rank

    _, run_dir = run_sweep(
        f"""
method: grid
metric: {{name: value, goal: maximize}}
trainable: TOY:counter
max_failures: {max_failures}
parameters: {{lr: {{values: [0.1, 0.2]}}}}
settings: {{steps: 5, die_at: 3, marker_dir: {tmp_path}}}
"""
    )
    rows = {row.params["lr"]: row for row in rank(run_dir, bootstrap=0, columns=("started",)).rows}
    assert sorted(p.name for p in tmp_path.glob("died-*")) == ["died-0.1", "died-0.2"]  # each worker died once
    if max_failures == 0:  # not restarted: errored (or left RUNNING by Ray's last snapshot), never finished
        assert {row.status for row in rows.values()} <= {"ERROR", "RUNNING"}
        assert all(row.value is None or row.columns["started"] == 0 for row in rows.values())
        return
    for lr, row in rows.items():
        assert row.status == "TERMINATED" and row.value == pytest.approx(5 * lr)
        assert row.columns["started"] == 3  # the trial's second run began from its step-3 checkpoint
