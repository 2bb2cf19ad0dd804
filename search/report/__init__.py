"""The reading side: a run directory -> a ranked table, its formats and plots. Never imports Ray or the user's code.

``ranking`` orders the trials by the metric under a scope (last, best or average report) and marks the rows tied
with the best by sacreBLEU's paired bootstrap; ``formats`` renders a ranking as a terminal table, Markdown, CSV or
JSON; ``plots`` draws the BLEU heatmap, metric curves and PBT schedules.
"""

from search.report.formats import FORMATS, format_ranking, title
from search.report.plots import plot
from search.report.ranking import (
    DEFAULT_COST,
    FINISHED,
    SCOPES,
    Ranking,
    Row,
    combine,
    flatten,
    mark_front,
    mark_ties,
    order_rows,
    pareto_front,
    rank,
    trial_params,
)

__all__ = [
    "DEFAULT_COST", "FINISHED", "FORMATS", "SCOPES", "Ranking", "Row", "combine", "flatten", "format_ranking", "mark_front",
    "mark_ties", "order_rows", "pareto_front", "plot", "rank", "title", "trial_params",
]  # fmt: skip
