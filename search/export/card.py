"""The model card (``README.md``): a section per sweep between ``<!-- search:KEY -->`` markers, replaced in place.

The ranked table, the sacreBLEU signature, the data and the sweep that produced the exported model.
"""

from __future__ import annotations

import json
from dataclasses import replace

import yaml

from search.export.values import yaml_safe
from search.report import Ranking, format_ranking
from search.spec import Spec

CARD_FILE = "README.md"
CARD_ROWS = 10  # rows of the ranked table in the model card


def card_section(ranking: Ranking, spec: Spec, title: str, rows: int = CARD_ROWS) -> str:
    """A model-card section: the ranked table (Markdown), the sacreBLEU signature and the data used."""
    table = format_ranking(replace(ranking, rows=ranking.rows[:rows]), "md")
    data = (
        yaml.safe_dump(yaml_safe(dict(spec.data)), default_flow_style=True, width=10**6).strip() if spec.data else "-"
    )
    settings = {k: v for k, v in spec.settings.items() if k in ("eval_size", "train_size", "max_steps", "limit")}
    lines = [f"## {title}", "", table, "", f"- Data: `{data}`"]
    if settings:
        lines.append(f"- Settings: `{json.dumps(yaml_safe(settings))}`")
    if ranking.signature:
        lines.append(f"- sacreBLEU signature: `{ranking.signature}`")
    lines.append(f"- Sweep: `{spec.name}` ({spec.method}, scheduler {spec.scheduler.type}), from `{spec.file}`")
    return "\n".join(lines) + "\n"


def card_with_section(old: str, key: str, section: str) -> str:
    """``old`` (a README) with the section between ``<!-- search:KEY -->`` markers replaced or appended."""
    begin, end = f"<!-- search:{key} -->", f"<!-- /search:{key} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        return head + block + rest.partition(end)[2].lstrip("\n")
    return (old.rstrip() + "\n\n" if old.strip() else "") + block


__all__ = ["CARD_FILE", "card_section", "card_with_section"]
