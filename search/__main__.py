"""The ``search`` command line: validate | run | resume | rank | export | plot | pipeline.

A user's mistake (bad YAML, unknown name, missing file, bad data) prints one line and exits with code 2, with no
traceback and no run directory left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from search.errors import Interrupted, RunError, UserError, os_error_behind, os_error_line

# Ray's new console output prints a large table per update; our ProgressCallback prints a line instead.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="sweep YAML file")
    p.add_argument("--smoke-test", action="store_true", help="merge the file's smoke_test: section over it")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override any key")
    p.add_argument(
        "--search",
        metavar='"NAME=V1:V2 ..."',
        help="replace the parameters with a grid in run_eval_search.py's syntax",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="search", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate a sweep file and print what Ray Tune will get")
    _spec_args(p)

    p = sub.add_parser("run", help="run a sweep with Ray Tune")
    _spec_args(p)
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--storage", help="directory that holds run directories (default: the spec's storage, ./runs)")
    p.add_argument("--name", help="run name (default: the spec's name, else the file's stem)")
    p.add_argument("--format", default="table", help="format of the final ranked table")

    p = sub.add_parser("resume", help="continue an interrupted sweep")
    p.add_argument("run_dir")
    p.add_argument("--address")
    p.add_argument("--format", default="table")

    p = sub.add_parser("extend", help="run more trials into a finished sweep (none of its trials runs again)")
    p.add_argument("run_dir")
    p.add_argument("--run-cap", type=int, metavar="N", help="random/bayes: N more trials (bayes starts from the old)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="e.g. a grid's new values")
    p.add_argument("--address")
    p.add_argument("--format", default="table")

    p = sub.add_parser("rank", help="ranked table of a finished or partial run")
    p.add_argument("run_dir")
    p.add_argument("--metric")
    p.add_argument("--mode", choices=("max", "min"))
    p.add_argument("--scope", default="last", choices=("last", "best", "avg"))
    p.add_argument("--format", default="table", choices=("table", "md", "csv", "json"))
    p.add_argument("--top", type=int)
    p.add_argument(
        "--columns", metavar="NAMES|all",
        help="comma-separated extra metrics to show; 'all': every column, however wide (the table fits the terminal)",
    )  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="paired bootstrap resamples (0: no test)")
    p.add_argument("--alpha", type=float, default=0.05, help="p-value under which a row is worse than the best")
    p.add_argument("--pareto", action="store_true", help="mark the configs on the Pareto front of (metric, cost)")
    _cost_arg(p)

    p = sub.add_parser("export", help="export the winner: generation defaults, or a model directory")
    p.add_argument("run_dir")
    p.add_argument("--to", required=True, metavar="MODEL_DIR", help="model directory to update or write")
    p.add_argument("--scope", default="last", choices=("last", "best", "avg"))
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    p.add_argument(
        "--force", action="store_true",
        help="replace an existing model directory (kept as .bak); export a --trial that errored or did not finish",
    )  # fmt: skip
    p.add_argument("--trial", metavar="TRIAL_ID", help="export this trial (its best checkpoint) instead of the winner")
    _prefer_arg(p)
    _cost_arg(p)

    p = sub.add_parser("plot", help="PNG plots of a run: BLEU heatmap, metric curves, PBT schedules")
    p.add_argument("run_dir")
    p.add_argument("--out", help="directory for the PNG files (default: RUN_DIR/plots)")
    p.add_argument("--scope", default="last", choices=("last", "best", "avg"))

    p = sub.add_parser("pipeline", help="fine-tune sweep -> top-k checkpoints -> decoding sweeps -> rank -> export")
    p.add_argument("file", help="pipeline YAML file")
    p.add_argument("--smoke-test", action="store_true", help="merge the file's smoke_test: section over it")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--storage", help="directory that holds run directories (default: the file's storage, ./runs)")
    p.add_argument("--force", action="store_true", help="replace an existing export directory (kept as .bak)")
    _prefer_arg(p, default=None, extra=" (default: the file's prefer:, else best)")
    return parser


def _prefer_arg(p: argparse.ArgumentParser, default: str | None = "best", extra: str = "") -> None:
    p.add_argument(
        "--prefer", default=default, choices=("best", "fastest-tied"),
        help="best: the winner on the metric; fastest-tied: the cheapest config the paired bootstrap cannot separate "
        "from it (p >= 0.05)" + extra,
    )  # fmt: skip


def _cost_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cost", default="beam_steps", metavar="COLUMN",
        help="the reported column that measures a config's cost (decode: beam_steps, decoder_steps, est_seconds)",
    )  # fmt: skip


def _load(args: argparse.Namespace):
    from search.spec import load_spec

    return load_spec(args.file, smoke_test=args.smoke_test, overrides=args.set, search=args.search)


def cmd_validate(args: argparse.Namespace) -> int:
    from search.pipeline import decode_spec, finetune_spec, is_pipeline, load_pipeline
    from search.spec import read_yaml
    from search.tune import check_spec, plan
    from search.tune.describe import describe_spec

    if not is_pipeline(read_yaml(args.file)):
        spec = _load(args)
        # the checks of `search run` that need more than the YAML (all of them with a trainable); writes nothing
        if spec.trainable:
            plan(spec)
        else:
            check_spec(spec)
        print(describe_spec(spec))
        return 0
    pipeline = load_pipeline(args.file, smoke_test=args.smoke_test)
    print(f"{args.file}: valid pipeline: fine-tune sweep -> top {pipeline.top_k} checkpoints -> decoding sweeps")
    print(f"export to: {pipeline.export}\n")
    print(describe_spec(finetune_spec(pipeline)) + "\n")
    print(describe_spec(decode_spec(pipeline, "<each checkpoint's model directory>")))
    return 0


def _finish(run_dir, fmt: str) -> int:
    """Print the ranked table of a run (ranked while Ray shuts down, ~1.5 s); 0 when a trial finished with the
    metric, else 1 with the distinct errors."""
    from search.report import format_ranking, rank
    from search.tune import disconnect

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rank") as pool:
        ranked = pool.submit(rank, run_dir)
        disconnect()
        ranking = ranked.result()
    print(format_ranking(ranking, fmt))
    print(f"run directory: {run_dir}")
    if ranking.best is not None:
        return 0
    errors = Counter(row.error for row in ranking.rows if row.status == "ERROR")
    print(f"no trial finished with {ranking.metric}: {len(ranking.rows)} trials, {sum(errors.values())} errored",
          file=sys.stderr)  # fmt: skip
    for error, count in errors.most_common():
        print(f"  {count} x {error}", file=sys.stderr)
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    from search.tune import run

    spec = _load(args)
    _, run_dir = run(spec, address=args.address, storage=args.storage, name=args.name)
    return _finish(run_dir, args.format)


def cmd_resume(args: argparse.Namespace) -> int:
    from search.tune import resume

    _, run_dir = resume(args.run_dir, address=args.address)
    return _finish(run_dir, args.format)


def cmd_extend(args: argparse.Namespace) -> int:
    from search.tune import extend

    extend(args.run_dir, run_cap=args.run_cap, overrides=args.set, address=args.address)
    return _finish(args.run_dir, args.format)


def cmd_rank(args: argparse.Namespace) -> int:
    from search.report import format_ranking, rank

    names = [c for c in (args.columns or "").split(",") if c]
    columns = tuple(c for c in names if c != "all") or None  # None: the spec's columns
    ranking = rank(
        args.run_dir, metric=args.metric, mode=args.mode, scope=args.scope, top=args.top, columns=columns,
        bootstrap=args.bootstrap, alpha=args.alpha, pareto=args.cost if args.pareto else None,
    )  # fmt: skip
    print(format_ranking(ranking, args.format, every_column="all" in names))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from search.export import export

    lines = export(
        args.run_dir, args.to, dry_run=args.dry_run, force=args.force, scope=args.scope, trial=args.trial,
        prefer=args.prefer, cost=args.cost,
    )  # fmt: skip
    for line in lines:
        print(line)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from search.report import plot

    for path in plot(args.run_dir, args.out, scope=args.scope):
        print(f"wrote {path}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from search.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(args.file, smoke_test=args.smoke_test)
    run_pipeline(pipeline, address=args.address, storage=args.storage, force=args.force, prefer=args.prefer)
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "run": cmd_run,
    "resume": cmd_resume,
    "extend": cmd_extend,
    "rank": cmd_rank,
    "export": cmd_export,
    "plot": cmd_plot,
    "pipeline": cmd_pipeline,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UserError, RunError, Interrupted) as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except Exception as e:
        os_error = os_error_behind(e)
        if os_error is None:
            raise
        print(os_error_line(os_error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with `search resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
