"""Export: generation_config.json merge, backup and atomicity; a bare generate() uses the exported values; the model
directory, best_hparams.yaml, model card and PBT schedule of a fine-tune sweep (the toy trainables ``toy_decode`` and
``toy_train`` of tests/toy_trainables.py stand in for ``decode`` and ``finetune``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from helpers import TOY_REFERENCES

from search.errors import UserError
from search.export import (
    GENERATION_FILE,
    atomic_write,
    card_section,
    card_with_section,
    export_generation,
    pbt_schedule,
    write_card,
)
from search.export.card import hub_model_id
from search.export.model_dir import hparams_yaml
from search.report import Ranking, Row
from search.rundir import Run
from search.spec import Spec, validate


@pytest.fixture()
def model_dir(tiny_model, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


# ------------------------------------------------------------------------------------------------ generation config


def test_generation_export_merges_keeps_other_fields_and_backs_up(model_dir):
    before = json.loads((model_dir / GENERATION_FILE).read_text())
    changes, backup = export_generation(model_dir, {"num_beams": 4, "length_penalty": 1.2, "early_stopping": True})
    assert changes == ["early_stopping: unset -> true", "length_penalty: unset -> 1.2", "num_beams: unset -> 4"]
    after = json.loads((model_dir / GENERATION_FILE).read_text())
    assert after["num_beams"] == 4 and after["length_penalty"] == 1.2 and after["early_stopping"] is True
    for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id", "max_length"):
        assert after[key] == before[key]
    assert backup == model_dir / (GENERATION_FILE + ".bak") and json.loads(backup.read_text()) == before
    # the same values again: nothing changes, nothing is written
    assert export_generation(model_dir, {"num_beams": 4}) == ([], None)
    _, second = export_generation(model_dir, {"num_beams": 6})
    assert second.name == GENERATION_FILE + ".bak2" and json.loads(second.read_text())["num_beams"] == 4


def test_bare_generate_uses_the_exported_values(model_dir):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    export_generation(model_dir, {"num_beams": 3, "length_penalty": 0.7, "max_new_tokens": 6})
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    inputs = AutoTokenizer.from_pretrained(model_dir)(TOY_REFERENCES[:3], return_tensors="pt", padding=True)
    assert (model.generation_config.num_beams, model.generation_config.length_penalty) == (3, 0.7)
    with torch.no_grad():
        bare = model.generate(**inputs, return_dict_in_generate=True, output_scores=True)
        explicit = model.generate(
            **inputs, num_beams=3, length_penalty=0.7, max_new_tokens=6, return_dict_in_generate=True,
            output_scores=True,
        )  # fmt: skip
        greedy = model.generate(**inputs, num_beams=1, return_dict_in_generate=True, output_scores=True)
    assert bare.sequences_scores is not None  # beam search ran; greedy output has no sequence scores
    assert torch.equal(bare.sequences, explicit.sequences)
    assert torch.allclose(bare.sequences_scores, explicit.sequences_scores)
    assert getattr(greedy, "sequences_scores", None) is None
    assert bare.sequences.shape[1] <= 1 + 6


def test_generation_dry_run_writes_nothing(model_dir):
    before = (model_dir / GENERATION_FILE).read_bytes()
    changes, backup = export_generation(model_dir, {"num_beams": 5}, dry_run=True)
    assert changes == ["num_beams: unset -> 5"] and backup is None
    assert (model_dir / GENERATION_FILE).read_bytes() == before
    assert sorted(p.name for p in model_dir.iterdir() if "generation" in p.name) == [GENERATION_FILE]


def test_generation_export_errors_are_one_line(model_dir, tmp_path):
    with pytest.raises(UserError, match="num_beamz: not a GenerationConfig field"):
        export_generation(model_dir, {"num_beamz": 5})
    with pytest.raises(UserError, match="invalid together"):
        export_generation(model_dir, {"num_beams": 2, "num_return_sequences": 4})
    with pytest.raises(UserError, match="not a model directory"):
        export_generation(tmp_path / "nowhere", {"num_beams": 5})


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "generation_config.json"
    target.write_text("old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_card_section_is_replaced_not_duplicated():
    card = card_with_section("# My model\n\nintro\n", "finetune", "## Fine-tuning\nv1")
    card = card_with_section(card, "decode", "## Decoding\nd1")
    card = card_with_section(card, "finetune", "## Fine-tuning\nv2")
    assert card.count("## Fine-tuning") == 1 and "v2" in card and "v1" not in card
    assert card.startswith("# My model\n\nintro\n") and "d1" in card


# ------------------------------------------------------------------------------------------------ model card

BLEU_SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIGNATURE = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def card_run(tmp_path: Path, **spec_keys) -> tuple[Spec, Ranking]:
    """A fine-tune sweep file in ``tmp_path/project/experiments`` (a project: it has a pyproject.toml) and a ranking
    of three trials whose directories hold their last report with the metrics' signatures."""
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    raw = {
        "metric": {"name": "bleu", "goal": "maximize"}, "parameters": {"lr": {"values": [0.1, 0.2, 0.3]}},
        "model": "Helsinki-NLP/opus-mt-en-es", "data": {"corpus": "bible-en-es"}, "columns": ["chrf"], **spec_keys,
    }  # fmt: skip
    spec = validate(raw, str(project / "experiments" / "sweep.yaml"))
    rows = []
    for i, (bleu, chrf) in enumerate([(12.5, 40.25), (11.0, 38.5), (9.75, 35.0)]):
        trial_dir = tmp_path / "runs" / f"t{i}"
        trial_dir.mkdir(parents=True)
        last = {"bleu": bleu, "chrf": chrf, "bleu_signature": BLEU_SIGNATURE, "chrf_signature": CHRF_SIGNATURE}
        (trial_dir / "result.json").write_text(json.dumps(last) + "\n")
        rows.append(Row(f"t{i}", "TERMINATED", 1, bleu, {"lr": 0.1 * (i + 1)}, {"chrf": chrf}, path=str(trial_dir)))
    error = f"FileNotFoundError: {tmp_path}/data/dev.tsv"
    rows.append(Row("t3", "ERROR", 0, None, {"lr": 0.4}, error=error, path=str(tmp_path / "runs" / "t3")))
    ranking = Ranking("bleu", "max", "last", ("lr",), ("chrf",), tuple(rows), signature=BLEU_SIGNATURE)
    return spec, ranking


def model_index(card) -> dict[str, tuple]:
    """``{metric_name: (value, signature, dataset, split)}`` of a loaded card's model-index."""
    return {
        r.metric_name: (r.metric_value, (r.metric_args or {}).get("signature"), r.dataset_type, r.dataset_split)
        for r in card.data.eval_results or []
    }


def test_card_front_matter_is_what_the_hub_reads(tmp_path):
    from huggingface_hub import ModelCard

    spec, ranking = card_run(tmp_path)
    section = card_section(ranking, spec, "Fine-tuning: sweep")
    readme = tmp_path / "README.md"
    readme.write_text(write_card("", {"finetune": section}, "bible-en-es-small"))
    assert readme.read_text().startswith("---\n")
    card = ModelCard.load(readme)
    data = card.data.to_dict()
    assert data["language"] == ["en", "es"] and data["datasets"] == ["bible-en-es"]
    assert data["base_model"] == "Helsinki-NLP/opus-mt-en-es" and data["metrics"] == ["bleu", "chrf"]
    assert (
        data["tags"] == ["translation", "ray-tune", "generated_from_search"] and data["pipeline_tag"] == "translation"
    )
    assert "license" not in data  # the model's license is its author's call, not the (public domain) data's
    assert data["model-index"][0]["name"] == "bible-en-es-small"
    # the model-index holds the winner's numbers of the ranked table, each with its signature
    best = ranking.best
    assert model_index(card) == {
        "bleu (fine-tuning sweep)": (best.value, BLEU_SIGNATURE, "bible-en-es", "dev"),
        "chrf (fine-tuning sweep)": (best.columns["chrf"], CHRF_SIGNATURE, "bible-en-es", "dev"),
    }
    assert {r.task_type for r in card.data.eval_results} == {"translation"}
    assert "| bleu | lr | chrf | trial_id | status | training_iteration |" in card.text
    assert "public domain" in card.text and "from `experiments/sweep.yaml`" in card.text


def test_card_scores_are_those_of_the_exported_trial(tmp_path):
    spec, ranking = card_run(tmp_path)
    why = ("exported the fastest tied: b", "  why: 2x cheaper")
    section = card_section(ranking, spec, "Fine-tuning: sweep", winner=ranking.rows[1], notes=why)
    assert [s["metric_value"] for s in section.scores] == [11.0, 38.5]
    assert "\n- exported the fastest tied: b\n- why: 2x cheaper\n" in section.text


def test_updating_a_card_merges_front_matter_and_never_duplicates(tmp_path):
    from huggingface_hub import ModelCard

    spec, ranking = card_run(tmp_path)
    user_card = """---
license: apache-2.0
tags: [my-tag, translation]
model-index:
- name: my-model
  results:
  - task: {type: translation}
    dataset: {type: wmt19, name: WMT19, split: test}
    metrics: [{type: bleu, value: 30.1, name: bleu (my own test)}]
---

# My model

My words.
"""
    first = write_card(user_card, {"finetune": card_section(ranking, spec, "Fine-tuning: sweep")}, "x")
    better = replace(ranking, rows=(replace(ranking.rows[0], value=13.5),) + ranking.rows[1:])
    decode = card_section(better, spec, "Decoding: grid")
    second = write_card(first, {"finetune": card_section(better, spec, "Fine-tuning: sweep"), "decode": decode}, "x")
    third = write_card(second, {"decode": decode}, "x")
    assert third == second  # writing the same again changes nothing
    readme = tmp_path / "README.md"
    readme.write_text(third)
    card = ModelCard.load(readme)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"  # the user's, kept
    assert data["tags"] == ["my-tag", "translation", "ray-tune", "generated_from_search"]
    assert data["model-index"][0]["name"] == "my-model"
    scores = model_index(card)
    assert scores["bleu (my own test)"][0] == 30.1
    assert scores["bleu (fine-tuning sweep)"][0] == scores["bleu (decoding sweep)"][0] == 13.5
    assert len(card.data.eval_results) == 5  # the user's, and bleu and chrf of each section: none twice
    assert card.text.count("## Fine-tuning: sweep") == 1 and card.text.count("## Decoding: grid") == 1
    assert card.text.count("# My model") == 1 and "My words." in card.text
    assert third.count("\n---\n") == 1  # one front matter


def test_a_card_with_broken_front_matter_is_a_user_error(tmp_path):
    spec, ranking = card_run(tmp_path)
    with pytest.raises(UserError, match="README.md: its front matter cannot be read"):
        write_card("---\n- a list\n---\n", {"finetune": card_section(ranking, spec, "t")}, "x")


def test_exported_files_name_no_path_of_the_machine(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "data" / name).write_text("source\ttarget\na\tb\n")
    project_data = tmp_path / "project" / "data"
    project_data.mkdir(parents=True)
    (project_data / "test.tsv").write_text("source\ttarget\na\tb\n")
    data = {"train": str(tmp_path / "data" / "train.tsv"), "dev": str(tmp_path / "data" / "dev.tsv"),
            "test": "../data/test.tsv"}  # fmt: skip
    model = tmp_path / "models" / "base"
    spec, ranking = card_run(tmp_path, data=data, model=str(model), settings={"model_src": str(model)})
    run = Run(tmp_path / "runs", spec, cuts_trials=False)
    files = {
        "README.md": write_card("", {"finetune": card_section(ranking, spec, "Fine-tuning: sweep")}, "m"),
        "best_hparams.yaml": hparams_yaml({"lr": 0.1}, run, ranking.best, ranking),
    }
    for name, text in files.items():
        for machine in (str(tmp_path), "/tmp/", "/work/", "/root/"):
            assert machine not in text, (name, machine)
    assert "search run experiments/sweep.yaml --set" in files["best_hparams.yaml"]
    # a file inside the project by its path there; one outside by its name; the winner's data by that name
    assert "test: data/test.tsv" in files["README.md"] and "dev: dev.tsv" in files["README.md"]
    assert "base_model" not in files["README.md"]  # a local model directory is no Hub model
    assert "| ERROR |" in files["README.md"]  # the errored trial is listed, its error line (a path) is not


@pytest.mark.parametrize(
    ("data", "language", "datasets", "dataset_type", "config"),
    [
        ({"hub": "wmt19", "config": "de-en", "pair": "de-en"}, ["de", "en"], ["wmt19"], "wmt19", "de-en"),
        ({"sacrebleu": "wmt19", "langpair": "ru-en"}, ["ru", "en"], None, "wmt19", "ru-en"),
        ({"corpus": "bible-kjv-web"}, ["en"], ["bible-kjv-web"], "bible-kjv-web", None),
    ],
)
def test_card_names_hub_datasets_sacrebleu_sets_and_their_languages(
    tmp_path, data, language, datasets, dataset_type, config
):
    spec, ranking = card_run(tmp_path, data=data)
    section = card_section(ranking, spec, "Fine-tuning: sweep")
    assert section.metadata.get("language") == language and section.metadata.get("datasets") == datasets
    assert {(s["dataset_type"], s["dataset_config"]) for s in section.scores} == {(dataset_type, config)}


def test_hub_model_ids():
    spec = validate({"parameters": {"x": {"value": 1}}}, "sweep.yaml")
    assert hub_model_id("Helsinki-NLP/opus-mt-en-de", spec) == "Helsinki-NLP/opus-mt-en-de"
    assert hub_model_id("Helsinki-NLP/opus-mt-en-de@v1.0", spec) == "Helsinki-NLP/opus-mt-en-de"
    for not_hub in ("./models/m", "/abs/m", "a/b/c", "s3://bucket/m", "tests", {"arch": "bart"}, None):
        assert hub_model_id(not_hub, spec) is None
    assert hub_model_id("tests/data", spec) is None  # a local directory of that name wins, as in transformers


# ------------------------------------------------------------------------------------------------ PBT schedule


PBT_SPEC = {
    "method": "random",
    "metric": {"name": "bleu", "goal": "maximize"},
    "scheduler": {"type": "pbt", "perturbation_interval": 2},
    "parameters": {"lr": {"values": [0.1, 0.2, 0.4]}, "layers": {"value": 2}},
}


def test_pbt_schedule_follows_the_lineage_in_rays_global_log(tmp_path):
    spec = validate(PBT_SPEC, "pbt.yaml")
    trial_dir = tmp_path / "train_b"
    trial_dir.mkdir()
    history = [{"training_iteration": i, "step": 10 * i, "config": {"lr": 0.1}} for i in range(1, 7)]
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in history))
    # Ray's lines: [target tag, clone tag, target iteration, clone iteration, clone config, new config]
    lines = [
        ["0_a", "2_c", 2, 2, {"lr": 0.4, "layers": 2}, {"lr": 0.2, "layers": 2}],  # a took c's weights at 2
        ["2_c", "1_b", 3, 3, {"lr": 0.1, "layers": 2}, {"lr": 0.15, "layers": 2}],  # not in b's lineage
        ["1_b", "0_a", 4, 4, {"lr": 0.2, "layers": 2}, {"lr": 0.25, "layers": 2}],  # b took a's weights at 4
        [
            "1_b",
            "2_c",
            5,
            6,
            {"lr": 0.15, "layers": 2},
            {"lr": 0.8, "layers": 2},
        ],  # restored at 6: after b's last report
        ["1_b", "2_c", 6, 6, {"lr": 0.15, "layers": 2}, {"lr": 0.9, "layers": 2}],  # after b's last report
    ]
    (tmp_path / "pbt_global.txt").write_text("".join(json.dumps(line) + "\n" for line in lines))
    row = Row("b", "TERMINATED", 6, 30.0, {"lr": 0.9}, path=str(trial_dir), tag="1_b")
    assert pbt_schedule(tmp_path, row, spec) == [
        {"after_iteration": 0, "from_step": 0, "config": {"lr": 0.4}},
        {"after_iteration": 2, "from_step": 20, "config": {"lr": 0.2}},
        {"after_iteration": 4, "from_step": 40, "config": {"lr": 0.25}},
    ]


def test_pbt_schedule_without_exploits_reads_the_reported_configs(tmp_path):
    spec = validate(PBT_SPEC, "pbt.yaml")
    trial_dir = tmp_path / "t"
    trial_dir.mkdir()
    lrs = [0.1, 0.1, 0.3, 0.3]
    history = [{"training_iteration": i + 1, "config": {"lr": lr, "layers": 2}} for i, lr in enumerate(lrs)]
    (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in history))
    (tmp_path / "pbt_global.txt").write_text(json.dumps(["0_a", "1_b", 2, 2, {"lr": 1}, {"lr": 2}]) + "\n")
    row = Row("t", "TERMINATED", 4, 1.0, {"lr": 0.3}, path=str(trial_dir), tag="3_t")
    schedule = pbt_schedule(tmp_path, row, spec)
    assert [(e["after_iteration"], e["config"]["lr"]) for e in schedule] == [(0, 0.1), (2, 0.3)]


# ------------------------------------------------------------------------------------------------ through Ray Tune


@pytest.mark.ray
def test_decoding_sweep_exports_its_winner_as_generation_defaults(run_sweep, model_dir, capsys, figures):
    from search.__main__ import main
    from search.report import rank

    _, run_dir = run_sweep(
        """
method: grid
metric: {name: bleu, goal: maximize}
trainable: TOY:toy_decode
parameters:
  num_beams: {values: [1, 4]}
  length_penalty: {values: [0.8, 1.0]}
  early_stopping: {values: [true, false]}
  max_new_tokens: {value: 12}
"""
    )
    before = (model_dir / GENERATION_FILE).read_bytes()
    assert main(["export", str(run_dir), "--to", str(model_dir), "--dry-run"]) == 0
    assert "would change" in capsys.readouterr().out and (model_dir / GENERATION_FILE).read_bytes() == before
    assert main(["export", str(run_dir), "--to", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "num_beams: unset -> 4" in out and "length_penalty: unset -> 1.0" in out and ".bak" in out
    saved = json.loads((model_dir / GENERATION_FILE).read_text())
    # early_stopping True costs 0.01 of error in the toy, so False wins; max_new_tokens is a constant of the sweep
    assert (saved["num_beams"], saved["length_penalty"], saved["early_stopping"], saved["max_new_tokens"]) == (
        4, 1.0, False, 12,
    )  # fmt: skip
    assert main(["rank", str(run_dir), "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "bleu signature: nrefs:1|" in md and "| best |" in md and "1000 resamples" in md
    assert main(["plot", str(run_dir)]) == 0
    heatmap = Path(run_dir).resolve() / "plots" / "heatmap.png"
    assert capsys.readouterr().out == f"wrote {heatmap}\n" and heatmap.is_file()
    # one panel per early_stopping value, a cell per num_beams (row) x length_penalty (column): that trial's BLEU
    bleu = {
        (r.params["early_stopping"], r.params["num_beams"], r.params["length_penalty"]): r.value
        for r in rank(run_dir).rows
    }
    panels = [ax for ax in figures.of(heatmap).axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["early_stopping=False", "early_stopping=True"]
    for ax, early_stopping in zip(panels, (False, True), strict=True):
        cells = [[bleu[early_stopping, nb, lp] for lp in (0.8, 1.0)] for nb in (1, 4)]
        assert ax.images[0].get_array().tolist() == cells
        assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for row in cells for v in row]
    # the winner's cell, num_beams=4 x length_penalty=1.0 without early stopping, and only it is boxed in red
    assert bleu[False, 4, 1.0] == max(bleu.values())
    assert [(p.get_x(), p.get_y(), p.get_edgecolor()) for p in panels[0].patches] == [(0.5, 0.5, (1.0, 0.0, 0.0, 1.0))]
    assert list(panels[1].patches) == []


def _reported(row, key: str) -> list:
    """``key`` of every report of the trial ``row`` (its result.json), in order."""
    lines = Path(row.path, "result.json").read_text().splitlines()
    return [json.loads(line)[key] for line in lines if line.strip()]


@pytest.mark.ray
def test_pbt_finetune_sweep_exports_model_hparams_card_and_schedule(run_sweep, tmp_path, tiny_model, capsys, figures):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from search.__main__ import main
    from search.report import rank

    _, run_dir = run_sweep(
        f"""
method: random
metric: {{name: bleu, goal: maximize}}
trainable: TOY:toy_train
run_cap: 2
seed: 0
scheduler: {{type: pbt, perturbation_interval: 2, quantile_fraction: 0.5, resample_probability: 1.0}}
parameters:
  lr: {{values: [0.05, 0.3]}}
settings: {{steps: 6, sleep: 0.5, model_src: {tiny_model}}}
data: {{corpus: toy}}
"""
    )
    out_dir = tmp_path / "exported"
    assert main(["export", str(run_dir), "--to", str(out_dir), "--dry-run"]) == 0
    assert "dry run: would write" in capsys.readouterr().out and not out_dir.exists()
    assert main(["export", str(run_dir), "--to", str(out_dir)]) == 0
    assert AutoModelForSeq2SeqLM.from_pretrained(out_dir).config.d_model == 32
    assert (out_dir / "tokenizer.json").is_file()
    tokenize = [AutoTokenizer.from_pretrained(d)(TOY_REFERENCES[:3]).input_ids for d in (out_dir, tiny_model)]
    assert tokenize[0] == tokenize[1]  # the model's own tokenizer
    hparams = yaml.safe_load((out_dir / "best_hparams.yaml").read_text())
    assert isinstance(hparams["lr"], float)
    assert "search run" in (out_dir / "best_hparams.yaml").read_text()
    card = (out_dir / "README.md").read_text()
    assert "| bleu |" in card and "bleu signature: `nrefs:1|" in card and "corpus toy" in card
    # the Hub's model-index holds the winner's score of `search rank`'s table, with its signature
    capsys.readouterr()
    assert main(["rank", str(run_dir), "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    (result,) = ModelCard.load(out_dir / "README.md").data.eval_results
    assert (result.metric_type, result.metric_value) == ("bleu", table["rows"][0]["value"])
    assert result.metric_args == {"signature": table["signature"]} and result.dataset_type == "toy"
    for name in ("README.md", "best_hparams.yaml"):
        assert str(tmp_path) not in (out_dir / name).read_text()
    assert "search run sweep.yaml --set" in (out_dir / "best_hparams.yaml").read_text()
    schedule = yaml.safe_load((out_dir / "pbt_schedule.yaml").read_text())
    assert schedule["schedule"][0]["after_iteration"] == 0 and "lr" in schedule["schedule"][0]["config"]
    assert schedule["schedule"][-1]["config"]["lr"] == hparams["lr"]  # the config of the winner's last report
    assert [e["after_iteration"] for e in schedule["schedule"]] == sorted(
        e["after_iteration"] for e in schedule["schedule"]
    )
    # never overwrite silently
    first_export = (out_dir / "best_hparams.yaml").read_text()
    assert main(["export", str(run_dir), "--to", str(out_dir)]) == 2
    assert capsys.readouterr().err == (
        f"{out_dir}: exists and is not empty; pass --force to replace it (the old one is kept as .bak)\n"
    )
    assert main(["export", str(run_dir), "--to", str(out_dir), "--force"]) == 0
    assert (tmp_path / "exported.bak" / "best_hparams.yaml").is_file()
    assert (tmp_path / "exported.bak" / "best_hparams.yaml").read_text() == first_export
    assert main(["plot", str(run_dir)]) == 0
    assert {p.name for p in (run_dir / "plots").iterdir()} == {"curves.png", "pbt_schedule.png"}
    # the curves: each trial's BLEU at each reported step, the winner bold
    ranking = rank(run_dir)
    best = ranking.best.trial_id
    (bleu_panel,) = figures.of(run_dir / "plots" / "curves.png").axes
    curves = {line.get_label(): line for line in bleu_panel.get_lines()}
    assert set(curves) == {f"{best} (best)", *(r.trial_id for r in ranking.rows if r.trial_id != best)}
    for row in ranking.rows:
        line = curves[row.trial_id + (" (best)" if row.trial_id == best else "")]
        assert list(line.get_xdata()) == _reported(row, "step") and list(line.get_ydata()) == _reported(row, "bleu")
        assert line.get_linewidth() == (2.6 if row.trial_id == best else 1.2)
    # the schedules: each trial's lr at each report, the winner bold and ending at the exported lr
    (lr_panel,) = figures.of(run_dir / "plots" / "pbt_schedule.png").axes
    assert lr_panel.get_ylabel() == "lr"
    schedules = {line.get_label(): line for line in lr_panel.get_lines()}
    assert set(schedules) == set(curves)
    for row in ranking.rows:
        line = schedules[row.trial_id + (" (best)" if row.trial_id == best else "")]
        assert list(line.get_xdata()) == _reported(row, "training_iteration")
        assert list(line.get_ydata()) == [c["lr"] for c in _reported(row, "config")]
        assert line.get_linewidth() == (2.6 if row.trial_id == best else 1.0)
    assert schedules[f"{best} (best)"].get_ydata()[-1] == hparams["lr"]


def test_export_refuses_an_unknown_trial(tmp_path):
    from search.errors import UserError
    from search.export import export
    from search.report import Ranking, Row

    spec_dir = tmp_path / "run"
    spec_dir.mkdir()
    (spec_dir / "search_spec.yaml").write_text(
        "file: sweep.yaml\nspec: {metric: {name: bleu, goal: maximize}, parameters: {x: {values: [1]}}}\n"
    )
    ranking = Ranking("bleu", "max", "last", ("x",), (), (Row("t1", "TERMINATED", 1, 1.0, {"x": 1}),))
    with pytest.raises(UserError, match=r"--trial: no trial 'nope' with bleu in .*; trials: t1"):
        export(spec_dir, tmp_path / "out", trial="nope", rank_fn=lambda *a, **k: ranking)
