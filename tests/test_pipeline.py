"""The pipeline file's checks, and one smoke run of the whole chain on the shipped corpus (~2-3 minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from search.errors import SpecError
from search.pipeline import load_pipeline, run_pipeline

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def pipeline_file(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((EXPERIMENTS / "pipeline.yaml").read_text())
    raw.update(finetune=str(EXPERIMENTS / "finetune_asha.yaml"), decode=str(EXPERIMENTS / "decode_seed_grid.yaml"))
    raw.update(export=str(tmp_path / "exported"), storage=str(tmp_path / "runs"))
    raw["smoke_test"].pop("export", None)
    raw.update(changes)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_shipped_pipeline_file_is_valid():
    full, smoke = (
        load_pipeline(EXPERIMENTS / "pipeline.yaml"),
        load_pipeline(EXPERIMENTS / "pipeline.yaml", smoke_test=True),
    )
    assert (full.top_k, smoke.top_k) == (2, 1) and smoke.smoke_test
    assert full.finetune.name == "finetune_asha.yaml" and full.decode.name == "decode_seed_grid.yaml"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"top_k": 0}, "top_k: must be an integer >= 1, got 0"),
        ({"decode": "nowhere.yaml"}, "decode: file not found"),
        ({"finetune_set": "run_cap=2"}, "finetune_set: must be a list of KEY.PATH=VALUE strings"),
        ({"exports": "x"}, "exports: unknown key; valid keys are name, finetune, decode"),
        ({"decode": str(EXPERIMENTS / "finetune_asha.yaml")}, "decode: must be a sweep of the decode trainable"),
    ],
)
def test_pipeline_file_errors_are_one_line(tmp_path, changes, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        load_pipeline(pipeline_file(tmp_path, **changes))


@pytest.mark.ray
def test_smoke_pipeline_ranks_everything_and_exports_the_winner(ray_session, tmp_path, figures):
    from transformers import AutoModelForSeq2SeqLM

    lines: list[str] = []
    result = run_pipeline(load_pipeline(pipeline_file(tmp_path), smoke_test=True), out=lines.append)
    exported = tmp_path / "exported"
    assert result["export"] == exported
    winner = result["winner"]
    generation = json.loads((exported / "generation_config.json").read_text())
    for key in ("num_beams", "length_penalty"):
        assert generation[key] == winner.params[key]
    # a constant of the decoding sweep is part of the winning config too
    assert generation["early_stopping"] == winner.params.get("early_stopping", True)
    assert generation["max_new_tokens"] == 8  # the decode sweep's shared setting under --smoke-test
    model = AutoModelForSeq2SeqLM.from_pretrained(exported)
    assert model.generation_config.num_beams == winner.params["num_beams"]
    card = (exported / "README.md").read_text()
    assert "## Fine-tuning: finetune_asha" in card and "## Decoding: decode_seed_grid" in card
    assert "| bleu | vs best | checkpoint | num_beams | length_penalty |" in (result["dir"] / "ranking.md").read_text()
    assert (exported / "best_hparams.yaml").is_file()
    # the hyperparameters written are those of the fine-tune trial whose checkpoint won the decoding sweep
    hparams = (exported / "best_hparams.yaml").read_text()
    assert hparams.startswith(f"# Best trial {winner.params['checkpoint']} of ")
    assert any(p.name == "heatmap.png" for p in result["plots"])
    # the decoding sweep's heatmap (one: top_k is 1 under --smoke-test) has the winner's BLEU as its best cell
    heatmap = figures.of(next(p for p in result["plots"] if p.name == "heatmap.png"))
    assert max(v for ax in heatmap.axes if ax.images for v in ax.images[0].get_array().compressed()) == winner.value
    assert lines[-1].startswith("exported model") and str(exported) in lines[-1]
