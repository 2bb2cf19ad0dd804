"""The integer-subsequence GRU trainable (experiments/subsequence.py): data, learning, checkpoints, one Tune run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "experiments" / "subsequence.py"
TINY = {"emb_size": 16, "hidden_size": 32, "layers": 2, "dropout": 0.1, "batch_size": 32}
TINY_SETTINGS = {"epochs": 2, "examples_per_epoch": 256, "val_examples": 64, "seed": 3}


def load_module():
    """Import the experiment file the way a user's trainable is named: by path, as module ``subsequence``."""
    if "subsequence" not in sys.modules:
        spec = importlib.util.spec_from_file_location("subsequence", PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["subsequence"] = module
        spec.loader.exec_module(module)
    return sys.modules["subsequence"]


@pytest.fixture(scope="module")
def sub():
    torch.set_num_threads(1)
    return load_module()


def test_target_of_hand_checked_examples(sub):
    src = torch.tensor(
        [
            [2, 3, 5, 1, 7, 4, 9, 9, 2, 6],  # x_2..x_4 = 7 4 9
            [0, 8, 1, 2, 3, 4, 5, 6, 7, 8],  # the whole input
            [7, 1, 9, 9, 9, 9, 9, 9, 9, 3],  # the last digit only
            [5, 2, 1, 1, 1, 1, 1, 8, 6, 1],  # x_5 x_6 = 8 6
        ]
    )
    expected = torch.tensor(
        [
            [7, 4, 9, 0, 0, 0, 0, 0],
            [1, 2, 3, 4, 5, 6, 7, 8],
            [3, 0, 0, 0, 0, 0, 0, 0],
            [8, 6, 0, 0, 0, 0, 0, 0],
        ]
    )
    assert torch.equal(sub.target_of(src), expected)


def test_make_examples_ranges_and_reference(sub):
    src, tgt = sub.make_examples(2000, torch.Generator().manual_seed(0))
    assert src.shape == (2000, 10) and tgt.shape == (2000, 8)
    idx, length, digits = src[:, 0], src[:, 1], src[:, 2:]
    assert set(idx.tolist()) == set(range(8))
    assert bool((length >= 1).all()) and bool((idx + length <= 8).all())
    assert set(digits.flatten().tolist()) == set(range(1, 10))
    for row, out in zip(src.tolist(), tgt.tolist(), strict=True):
        i, n, xs = row[0], row[1], row[2:]
        assert out == xs[i : i + n] + [0] * (8 - n)
    again, _ = sub.make_examples(2000, torch.Generator().manual_seed(0))
    assert torch.equal(src, again)


def test_loss_falls_and_metrics_are_reported(sub):
    config = {**TINY, "encoder_lr": 5e-3, "decoder_lr": 5e-3, "settings": {**TINY_SETTINGS, "examples_per_epoch": 1024}}
    history = sub.run_locally(config, epochs=3)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "last_report"}
    assert [row["last_report"] for row in history] == [False, False, True]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert all(0.0 <= row["val_accuracy"] <= 1.0 for row in history)


def test_validation_set_is_fixed_by_seed(sub):
    config = {"settings": TINY_SETTINGS}
    first, second = sub.validation_set(config), sub.validation_set(config)
    assert torch.equal(first[0], second[0])
    other = sub.validation_set({"settings": {**TINY_SETTINGS, "seed": 4}})
    assert not torch.equal(first[0], other[0])


def test_unknown_keys_are_refused(sub):
    with pytest.raises(ValueError, match="hiden_size"):
        sub.full_config({"hiden_size": 64})
    with pytest.raises(ValueError, match="settings.epoch"):
        sub.full_config({"settings": {"epoch": 3}})
    params, settings = sub.full_config({"layers": 1, "model": None, "settings": {"cache_dir": "/tmp", "seed": 5}})
    assert params["layers"] == 1 and params["hidden_size"] == sub.DEFAULTS["hidden_size"]
    assert settings["seed"] == 5 and settings["epochs"] == sub.SETTINGS["epochs"]


def test_checkpoint_round_trip_resumes_exactly(sub, tmp_path):
    config = {**TINY, "settings": TINY_SETTINGS}
    state = sub.build(config)
    sub.train_epoch(state, config)
    sub.save(state, str(tmp_path), config)
    sub.train_epoch(state, config)  # the uninterrupted run

    resumed = sub.build(config)
    sub.restore(resumed, str(tmp_path), config)
    assert resumed.epoch == 1
    sub.train_epoch(resumed, config)
    assert resumed.epoch == 2
    for (name, value), (_, other) in zip(
        state.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(value, other), name


def test_restore_applies_the_current_learning_rates(sub, tmp_path):
    config = {**TINY, "encoder_lr": 1e-3, "decoder_lr": 2e-3, "settings": TINY_SETTINGS}
    state = sub.build(config)
    sub.train_epoch(state, config)
    sub.save(state, str(tmp_path), config)

    mutated = {**config, "encoder_lr": 7e-4, "decoder_lr": 3e-3, "teacher_forcing": 0.9, "clip": 0.5}
    resumed = sub.build(mutated)
    sub.restore(resumed, str(tmp_path), mutated)
    assert [group["lr"] for group in resumed.optimizer.param_groups] == [7e-4, 3e-3]
    assert resumed.epoch == 1
    for (name, value), (_, other) in zip(
        state.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(value, other), name
    saved_state, loaded_state = state.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    for key in saved_state:
        assert torch.equal(saved_state[key]["exp_avg"], loaded_state[key]["exp_avg"])
        assert torch.equal(saved_state[key]["step"], loaded_state[key]["step"])


def test_restore_refuses_another_architecture(sub, tmp_path):
    config = {**TINY, "settings": TINY_SETTINGS}
    state = sub.build(config)
    sub.save(state, str(tmp_path), config)
    wider = {**config, "hidden_size": 48}
    with pytest.raises(ValueError, match="hidden_size"):
        sub.restore(sub.build(wider), str(tmp_path), wider)


@pytest.mark.ray
def test_pbt_run_restores_mutated_trials(sub, ray_session, tmp_path, monkeypatch):
    from ray import cloudpickle, tune
    from ray.tune.schedulers import PopulationBasedTraining

    from search.tune.pbt import SpentAwarePBT

    cloudpickle.register_pickle_by_value(sub)  # workers cannot import a module loaded from a file path
    lr = tune.loguniform(1e-3, 1e-2)
    exploited_at = []  # the epoch of every exploit that reached Ray's PBT
    ray_exploit = PopulationBasedTraining._exploit

    def recording(self, tune_controller, trial, trial_to_clone):
        exploited_at.append(self._trial_state[trial].last_result["epoch"])
        return ray_exploit(self, tune_controller, trial, trial_to_clone)

    monkeypatch.setattr(PopulationBasedTraining, "_exploit", recording)
    scheduler = SpentAwarePBT(
        time_attr="training_iteration",
        perturbation_interval=1,  # synchronous: an exploit at epoch 1 and, in Ray's PBT, another at epoch 2, the last
        hyperparam_mutations={"encoder_lr": lr, "decoder_lr": lr},
        quantile_fraction=0.5,
        synch=True,  # both trials reach each epoch before the exploit, so one always clones the other
        log_config=True,
    )
    settings = {**TINY_SETTINGS, "epochs": 2, "examples_per_epoch": 128, "val_examples": 32}
    tuner = tune.Tuner(
        tune.with_resources(sub.train, {"cpu": 1}),
        param_space={**TINY, "encoder_lr": lr, "decoder_lr": lr, "settings": settings},
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", num_samples=2, scheduler=scheduler),
        # A trial that ignored its checkpoint would restart at every sync pause and never end: stop it at 3.
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pbt", verbose=0, stop={"training_iteration": 3}),
    )
    results = tuner.fit()
    assert not results.errors
    assert list((tmp_path / "pbt").glob("pbt_policy_*.txt")), "PBT exploited no trial"
    assert exploited_at == [1], "a spent trial was exploited: it would end on the donor's checkpoint"
    for result in results:
        # Tune restores training_iteration with the checkpoint; a restart from scratch would run past epoch 2.
        assert result.metrics["epoch"] == result.metrics["training_iteration"] == 2
        with result.checkpoint.as_directory() as directory:
            saved = torch.load(Path(directory) / "state.pt", weights_only=True)
        assert saved["epoch"] == 2
        lrs = [group["lr"] for group in saved["optimizer"]["param_groups"]]
        assert lrs == [result.config["encoder_lr"], result.config["decoder_lr"]]
