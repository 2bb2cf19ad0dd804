"""The finetune trainable: config checks, batching, learning, checkpoints, export, and PBT restore semantics."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from search.errors import SpecError
from search.trainables import finetune as ft
from search.trainables.checkpoints import export_model_dir, load_training_state, model_dir
from search.trainables.finetune_config import SETTING_DEFAULTS

SOURCES = [
    "the cat sleeps", "the dog eats", "a bird sings", "my house is big",
    "the water is cold", "we walk home", "you read a book", "they see the sea",
]  # fmt: skip
TARGETS = [
    "el gato duerme", "el perro come", "un pájaro canta", "mi casa es grande",
    "el agua está fría", "caminamos a casa", "lees un libro", "ellos ven el mar",
]  # fmt: skip
PAIRS = SimpleNamespace(sources=SOURCES, references=TARGETS, name="toy")
MODEL = {"arch": "bart", "d_model": 64, "layers": 1, "heads": 4, "ffn": 128, "vocab_size": 300}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def config(tmp_path: Path, **overrides) -> ft.FinetuneConfig:
    settings = {"max_steps": 40, "eval_every": 20, "eval_size": 8, "cache_dir": str(tmp_path / "cache")}
    settings.update(overrides.pop("settings", {}))
    base = {"model": MODEL, "learning_rate": 3e-3, "warmup_steps": 10, "batch_tokens": 200, "settings": settings}
    return ft.resolve_config({**base, **overrides})


def run(
    cfg: ft.FinetuneConfig, checkpoint_root: Path | None = None, start: Path | None = None, trial_id=None, out=None
):
    """Train; return the reports, saving each report's checkpoint under ``checkpoint_root/<step>``."""
    reports = []

    def report(metrics, save):
        reports.append(metrics)
        if checkpoint_root is not None:
            save(checkpoint_root / str(metrics["step"]))

    ft.train(cfg, PAIRS, PAIRS, report, start, trial_id, out)
    return reports


# ---------------------------------------------------------------- config, batches, optimizer


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"lerning_rate": 1e-3}, "lerning_rate", "unknown finetune parameter; valid ones are learning_rate"),
        ({"settings": {"eval_evry": 5}}, "settings.eval_evry", "unknown setting; valid ones are max_steps"),
        ({"settings": {"max_steps": 0}}, "settings.max_steps", "must be an integer > 0, got 0"),
        ({"learning_rate": -1.0}, "learning_rate", "must be a number > 0, got -1.0"),
        ({"batch_tokens": 1.5}, "batch_tokens", "must be an integer > 0, got 1.5"),
        ({"label_smoothing": 1.0}, "label_smoothing", "must be < 1, got 1.0"),
        ({"dropout": 1.0}, "dropout", "must be < 1"),
        ({"freeze_encoder_steps": -3}, "freeze_encoder_steps", "must be an integer >= 0, got -3"),
        ({"model": None}, "model", "is required"),
    ],
)
def test_resolve_config_rejects(tmp_path, overrides, key, words):
    with pytest.raises(SpecError) as err:
        config(tmp_path, **overrides)
    assert err.value.key == key
    assert words in str(err.value)


def test_resolve_config_fills_defaults(tmp_path):
    cfg = config(tmp_path, encoder_lr=1e-4)
    assert cfg.base_lrs == (1e-4, 3e-3)
    assert cfg.settings["num_beams"] == SETTING_DEFAULTS["num_beams"]
    assert cfg.hparams()["encoder_lr"] == 1e-4 and "settings" not in cfg.hparams()


def test_make_batches_bounds_padded_tokens_and_covers_every_example():
    lengths = [random.Random(i).randint(3, 40) for i in range(300)] + [90]
    batches = ft.token_batches(lengths, 120, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 120 or len(batch) == 1
    assert [90 in [lengths[i] for i in b] for b in batches].count(True) == 1
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 3  # bucketed by length
    assert ft.token_batches(lengths, 120, random.Random(0)) == batches
    assert ft.token_batches(lengths, 120, random.Random(1)) != batches


def test_param_groups_put_shared_embeddings_with_the_decoder(tmp_path):
    cfg = config(tmp_path)
    state = ft.init_state(cfg, SOURCES + TARGETS)
    encoder, decoder = ft.param_groups(state.model)
    shared = state.model.get_input_embeddings().weight
    assert shared is state.model.get_output_embeddings().weight
    assert any(p is shared for p in decoder) and not any(p is shared for p in encoder)
    enc_ids = {id(p) for p in state.model.get_encoder().parameters()} - {id(shared)}
    assert {id(p) for p in encoder} == enc_ids
    all_ids = {id(p) for p in state.model.parameters() if p.requires_grad}
    assert {id(p) for p in encoder} | {id(p) for p in decoder} == all_ids
    assert not {id(p) for p in encoder} & {id(p) for p in decoder}


def test_lr_schedule_and_separate_group_lrs(tmp_path):
    assert ft.lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert ft.lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert ft.lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert ft.lr_factor(100, 10, 100) == 0.0
    cfg = config(tmp_path, encoder_lr=1e-4, decoder_lr=2e-3, freeze_encoder_steps=5, weight_decay=0.05)
    state = ft.init_state(cfg, SOURCES + TARGETS)
    assert ft.apply_hparams(state.optimizer, cfg, 4) == (0.0, pytest.approx(2e-3 * 0.5))
    assert ft.apply_hparams(state.optimizer, cfg, 9) == (pytest.approx(1e-4), pytest.approx(2e-3))
    assert [g["weight_decay"] for g in state.optimizer.param_groups] == [0.05, 0.05]


# ---------------------------------------------------------------- learning


def test_frozen_encoder_does_not_move(tmp_path):
    cfg = config(tmp_path, freeze_encoder_steps=20, weight_decay=0.1, settings={"max_steps": 20, "eval_every": 20})
    ft.save_state(ft.init_state(cfg, SOURCES + TARGETS), cfg, tmp_path / "start", None)
    reports = run(cfg, checkpoint_root=tmp_path / "ckpt", start=tmp_path / "start")
    assert reports[-1]["lr_encoder"] == 0.0 and reports[-1]["lr_decoder"] > 0
    before, after = state_dict_of(model_dir(tmp_path / "start")), state_dict_of(model_dir(tmp_path / "ckpt" / "20"))
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    encoder_only = {k for k in before if ".encoder." in k and "embed_tokens" not in k}
    assert encoder_only and not moved & encoder_only
    assert "model.shared.weight" in moved and any(".decoder.layers." in k for k in moved)
    optimizer = load_training_state(tmp_path / "ckpt" / "20")["optimizer"]
    encoder_indices = set(optimizer["param_groups"][0]["params"])
    assert encoder_indices and not encoder_indices & set(optimizer["state"])  # no Adam moments while frozen


def state_dict_of(directory: Path) -> dict[str, torch.Tensor]:
    return AutoModelForSeq2SeqLM.from_pretrained(directory, local_files_only=True).state_dict()


def test_loss_falls_and_tiny_model_overfits(tmp_path):
    cfg = config(tmp_path, dropout=0.0, label_smoothing=0.0, settings={"max_steps": 120, "eval_every": 40})
    reports = run(cfg, checkpoint_root=tmp_path / "ckpt", out=tmp_path / "trial")
    assert (tmp_path / "trial" / "references.txt").read_text(encoding="utf-8").splitlines() == TARGETS
    assert (tmp_path / "trial" / "hypotheses.txt").read_text(encoding="utf-8").splitlines() == TARGETS
    losses = [r["train_loss"] for r in reports]
    assert [r["step"] for r in reports] == [40, 80, 120]
    assert [r["last_report"] for r in reports] == [False, False, True]  # PBT never exploits the last
    assert losses[0] > losses[1] > losses[2]
    assert reports[-1]["eval_loss"] < 0.1
    assert reports[-1]["bleu"] == pytest.approx(100.0)
    assert reports[-1]["bleu_signature"].startswith("nrefs:1")
    for key in ("lr_encoder", "lr_decoder", "tokens_per_s", "peak_mem_mb"):
        assert reports[-1][key] >= 0
    assert reports[0]["tokens_per_s"] > 0 and reports[0]["peak_mem_mb"] > 0

    # checkpoint -> plain model directory -> from_pretrained -> generate() reproduces the references
    from ray import tune

    checkpoint = tune.Checkpoint.from_directory(str(tmp_path / "ckpt" / "120"))  # what a ResultGrid hands out
    out = export_model_dir(checkpoint, tmp_path / "export", generation={"num_beams": 2})
    model = AutoModelForSeq2SeqLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert model.generation_config.num_beams == 2
    batch = tok(SOURCES, return_tensors="pt", padding=True)
    generated = tok.batch_decode(model.generate(**batch, max_new_tokens=20, max_length=None), skip_special_tokens=True)
    assert [g.strip() for g in generated] == TARGETS


@pytest.mark.parametrize(("grad_accum", "precision"), [(1, "fp32"), (2, "fp16")])  # fp16: autocast and a scaler
def test_resume_of_the_same_trial_continues_exactly(tmp_path, grad_accum, precision):
    settings = {"max_steps": 20, "eval_every": 10, "grad_accum": grad_accum, "precision": precision}
    cfg = config(tmp_path, dropout=0.3, settings=settings)
    straight = run(cfg, checkpoint_root=tmp_path / "a", trial_id="t1")
    resumed = run(cfg, checkpoint_root=tmp_path / "b", start=tmp_path / "a" / "10", trial_id="t1")
    assert [r["step"] for r in resumed] == [20]
    assert resumed[0]["start_from"] == "t1" and resumed[0]["start_step"] == 10
    assert resumed[0]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-5)
    a, b = state_dict_of(model_dir(tmp_path / "a" / "20")), state_dict_of(model_dir(tmp_path / "b" / "20"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_finetune_outside_tune_on_the_shipped_corpus(tmp_path, capsys):
    ft.finetune(
        {
            "model": {"arch": "t5", "d_model": 32, "layers": 1, "heads": 2, "ffn": 64, "vocab_size": 400},
            "data": {"corpus": "bible-en-es"},
            "settings": {
                "max_steps": 4,
                "eval_every": 2,
                "eval_size": 8,
                "train_size": 200,
                "max_new_tokens": 8,
                "cache_dir": str(tmp_path / "cache"),
                "output_dir": str(tmp_path / "out"),
            },
        }  # fmt: skip
    )
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint_*")) == ["checkpoint_000002", "checkpoint_000004"]
    assert len((tmp_path / "out" / "hypotheses.txt").read_text(encoding="utf-8").splitlines()) == 8
    assert load_training_state(tmp_path / "out" / "checkpoint_000004")["step"] == 4
    printed = capsys.readouterr().out
    assert "'step': 2" in printed and "'step': 4" in printed and "'bleu'" in printed


# ---------------------------------------------------------------- PBT: exploit = donor's state, then the new config


@pytest.fixture
def donor(tmp_path):
    """A donor trial trained 20 steps at lr 1e-3; its checkpoint at step 20."""
    cfg = config(tmp_path, learning_rate=1e-3, weight_decay=0.01, settings={"max_steps": 100, "eval_every": 20})
    cfg = ft.FinetuneConfig(**{**cfg.__dict__, "settings": {**cfg.settings, "max_steps": 20}})
    run(cfg, checkpoint_root=tmp_path / "donor", trial_id="donor")
    return tmp_path / "donor" / "20"


def test_exploit_restores_donor_weights(tmp_path, donor):
    new = config(tmp_path, learning_rate=5e-3, dropout=0.2, settings={"max_steps": 100, "eval_every": 20})
    state = ft.restore(new, donor, trial_id="receiver")
    donor_weights = state_dict_of(model_dir(donor))
    restored = state.model.state_dict()
    assert donor_weights.keys() == restored.keys()
    assert all(torch.equal(donor_weights[k], restored[k]) for k in donor_weights)
    assert state.model.config.dropout == 0.2  # the new config's dropout, on the donor's weights
    assert (state.step, state.start_from, state.start_step) == (20, "donor", 20)


def test_exploit_restores_donor_optimizer_state(tmp_path, donor):
    new = config(tmp_path, learning_rate=5e-3, settings={"max_steps": 100, "eval_every": 20})
    state = ft.restore(new, donor, trial_id="receiver")
    saved = load_training_state(donor)["optimizer"]["state"]
    restored = state.optimizer.state_dict()["state"]
    assert saved.keys() == restored.keys() and len(saved) > 0
    for index, moments in saved.items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[name], restored[index][name])
    assert float(restored[0]["step"]) == 20


def test_exploit_applies_the_new_learning_rates_at_the_restored_step(tmp_path, donor):
    donor_groups = load_training_state(donor)["optimizer"]["param_groups"]
    new = config(
        tmp_path, encoder_lr=5e-3, decoder_lr=7e-3, weight_decay=0.2, settings={"max_steps": 100, "eval_every": 20}
    )
    state = ft.restore(new, donor, trial_id="receiver")
    factor = ft.lr_factor(20, new.warmup_steps, 100)  # the schedule continues from step 20
    lrs = [g["lr"] for g in state.optimizer.param_groups]
    assert lrs == [pytest.approx(5e-3 * factor), pytest.approx(7e-3 * factor)]
    assert [g["lr"] for g in donor_groups] != pytest.approx(lrs)
    assert [g["weight_decay"] for g in state.optimizer.param_groups] == [0.2, 0.2]

    # ...and training goes on from the donor's step under the new rates
    reports = run(new, start=donor, trial_id="receiver")
    assert [r["step"] for r in reports] == [40, 60, 80, 100]
    first = reports[0]
    assert (first["start_from"], first["start_step"]) == ("donor", 20)
    assert first["lr_encoder"] == pytest.approx(5e-3 * ft.lr_factor(39, new.warmup_steps, 100))
    assert first["lr_decoder"] == pytest.approx(7e-3 * ft.lr_factor(39, new.warmup_steps, 100))


@pytest.mark.ray
def test_pbt_exploit_continues_from_the_donors_step(ray_session, tmp_path):
    import pandas as pd
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    def trainable(config):  # the real loop and Tune reporting, on in-memory pairs instead of a corpus
        from search.trainables.common import use_trial_cpus

        use_trial_cpus()
        ft.run_trial(ft.resolve_config(config), PAIRS, PAIRS)

    settings = {"max_steps": 30, "eval_every": 10, "eval_size": 8, "cache_dir": str(tmp_path / "cache")}
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=1,
        hyperparam_mutations={"learning_rate": [3e-4, 1e-3, 3e-3]},
        quantile_fraction=0.5,
        synch=True,  # perturb when both trials reached the interval: an exploit happens at every one
    )
    tuner = tune.Tuner(
        trainable,
        param_space={
            "model": MODEL,
            "batch_tokens": 200,
            "learning_rate": tune.grid_search([3e-4, 3e-3]),
            "settings": settings,
        },
        tune_config=tune.TuneConfig(
            scheduler=pbt, metric="eval_loss", mode="min", max_concurrent_trials=2, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray"),
            name="pbt",
            stop={"training_iteration": 6},  # 3 reports are expected; a restore that restarts from 0 would loop
            # PBT restores donors' latest checkpoints: keeping only the best 2 deletes them too early (Ray warns).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=4, checkpoint_score_attribute="eval_loss", checkpoint_score_order="min"
            ),
            verbose=0,
        ),
    )
    results = tuner.fit()
    assert not results.errors
    # progress.csv of each trial: with reuse_actors, Ray 2.60 left result.json (and so metrics_dataframe) empty here,
    # and after an exploit Result.metrics may carry the donor's last result.
    progress = [pd.read_csv(Path(r.path) / "progress.csv") for r in results]
    frames = {frame["trial_id"].iloc[0]: frame for frame in progress}
    assert len(frames) == 2
    exploits = []
    for trial_id, frame in frames.items():
        rows = frame.sort_values("training_iteration").to_dict("records")
        assert rows[-1]["step"] == 30
        for before, row in zip(rows, rows[1:], strict=False):
            donor = row["start_from"] if isinstance(row["start_from"], str) else ""  # "" reads back as NaN
            if donor in ("", trial_id) or row["start_step"] == before["start_step"]:
                continue
            exploits.append((trial_id, donor, row["start_step"]))
            assert row["start_step"] in set(frames[donor]["step"])  # resumed from a step the donor reported
            assert row["step"] == row["start_step"] + 10  # and went on from there
    columns = ["training_iteration", "step", "start_from", "start_step", "eval_loss", "lr_decoder"]
    assert exploits, "PBT never exploited:\n" + "\n".join(f[columns].to_string() for f in frames.values())
