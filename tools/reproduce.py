#!/usr/bin/env python
"""Run a paper table (or an ad-hoc grid of configs) and print our numbers beside the paper's.

    python tools/reproduce.py run tools/tables/fmnist_noisy.yaml             # runs what is not done yet
    python tools/reproduce.py report tools/tables/fmnist_noisy.yaml --markdown docs/x.md --plot docs/x.png
    python tools/reproduce.py run --configs configs/quickstart.yaml \
        --grid data.init_args.noise_rate=0.2,0.4 --seeds 0 1 2 --name quick
    python tools/reproduce.py list                                           # the table files
    python tools/reproduce.py publish fmnist_noisy --dest docs/results/fmnist-noisy   # commit-ready copies
    python tools/reproduce.py report fmnist_noisy --out docs/results/fmnist-noisy --markdown t.md \
        --curves-plot curves.png --curves-column "sym 0.8" --curves-rows CE GCE

Runs go to runs/sweeps/<table name>/<row>/<column>/seed<k>/ (``--out`` to change); an interrupted sweep
picks up where it stopped (finished runs are skipped, a run with a last checkpoint resumes from it).
``--devices N`` runs each row with N GPUs under DDP; ``--shard i/n`` runs every n-th run (array jobs);
``--rows A B`` runs only those rows, in that order, and ``--columns X`` only those columns.
``publish`` copies each finished run's ``config.yaml`` (output paths made relative) and ``results.json`` to
``--dest``, the layout ``report --out`` reads: a published table is re-reported from the committed files.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lt_noise.sweep import (  # noqa: E402
    Table,
    collect,
    load_table,
    markdown_table,
    plan_runs,
    publish,
    run_sweep,
    status,
    write_csv,
)
from lt_noise.sweep_plots import accuracy_by_column_figure, epoch_curves_figure, per_class_figure  # noqa: E402

TABLES = ROOT / "tools" / "tables"


def _adhoc_table(args: argparse.Namespace) -> Table:
    grid = []
    for item in args.grid or []:
        key, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--grid expects key=v1,v2,..., got {item!r}")
        grid.append([(key, yaml.safe_load(v)) for v in values.split(",")])
    columns = {}
    for combo in itertools.product(*grid) if grid else [()]:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo) or "default"
        columns[label] = dict(combo)
    rows = {Path(c).stem: {"config": c} for c in args.configs}
    return Table(name=args.name, caption=f"ad-hoc sweep {args.name}", rows=rows, columns=columns,
                 seeds=tuple(args.seeds or (0,)), extra_metrics=("best_acc", "many", "medium", "few"))


def _table(args: argparse.Namespace) -> Table:
    if args.configs:
        return _adhoc_table(args)
    if not args.table:
        raise SystemExit("give a table file or --configs")
    path = Path(args.table)
    if not path.exists() and (TABLES / f"{args.table}.yaml").exists():
        path = TABLES / f"{args.table}.yaml"
    return load_table(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report", "publish", "list"])
    parser.add_argument("table", nargs="?", help="a table file, or the name of one in tools/tables/")
    parser.add_argument("--configs", nargs="*", help="ad-hoc sweep: config files (rows)")
    parser.add_argument("--grid", nargs="*", help="ad-hoc sweep: key=v1,v2 (columns are the product)")
    parser.add_argument("--name", default="adhoc", help="ad-hoc sweep name")
    parser.add_argument("--seeds", nargs="*", type=int, help="override the table's seeds")
    parser.add_argument("--out", type=Path, help="sweep directory (default runs/sweeps/<name>)")
    parser.add_argument("--devices", type=int, default=1, help="GPUs per run (DDP when > 1)")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th run starting at i")
    parser.add_argument("--columns", nargs="*", help="run these columns (default: the table's default ones; 'all')")
    parser.add_argument("--rows", nargs="*", help="run only these rows, in this order (default: every row)")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--markdown", type=Path, help="report: also write the markdown table here")
    parser.add_argument("--csv", type=Path, help="report: also write the CSV here")
    parser.add_argument("--plot", type=Path, help="report: accuracy-by-column PNG")
    parser.add_argument("--per-class-plot", type=Path, help="report: per-class accuracy vs count PNG")
    parser.add_argument("--per-class-column", help="report: the column whose runs the per-class plot pools")
    parser.add_argument("--per-class-rows", nargs="*", help="report: the rows of the per-class plot (default: all)")
    parser.add_argument("--curves-plot", type=Path, help="report: test accuracy per epoch PNG")
    parser.add_argument("--curves-column", help="report: the column of the per-epoch curves")
    parser.add_argument("--curves-rows", nargs="*", help="report: the rows of the per-epoch curves (default: all)")
    parser.add_argument("--dest", type=Path, help="publish: where the copies go (e.g. docs/results/<table>)")
    parser.add_argument("--published", type=Path,
                        help="run: skip the runs already published there (a sweep continued on another machine)")
    args = parser.parse_args(argv)

    if args.action == "list":
        for path in sorted(TABLES.glob("*.yaml")):
            table = load_table(path)
            print(f"{path.stem:40s} {len(table.rows)} rows x {len(table.columns)} columns x {len(table.seeds)} seeds  {table.caption}")
        return 0
    table = _table(args)
    out = args.out or ROOT / "runs" / "sweeps" / table.name
    runs = plan_runs(table, out, seeds=args.seeds, root=ROOT, columns=args.columns if args.action == "run" else ["all"])
    if args.action == "run":
        index, count = (int(x) for x in args.shard.split("/"))
        started = time.time()
        todo = runs
        if args.rows:
            try:
                todo = plan_runs(table, out, seeds=args.seeds, root=ROOT, columns=args.columns, rows=args.rows)
            except ValueError as error:
                raise SystemExit(f"--rows: {error}") from None
        if args.published:
            before = len(todo)
            todo = [run for run in todo if status(dataclasses.replace(run, directory=args.published / run.directory.relative_to(out))) != "done"]
            print(f"{before - len(todo)} runs already published in {args.published}", flush=True)
        outcomes = run_sweep(todo, devices=args.devices, shard=(index, count), dry_run=args.dry_run,
                             log=lambda *line: print(*line, flush=True))
        failed = [run for run, outcome in outcomes if outcome.startswith("FAILED")]
        print(f"{len(outcomes)} runs in {time.time() - started:.0f}s, {len(failed)} failed")
        print(markdown_table(table, collect(runs)))
        return 1 if failed else 0
    if args.action == "publish":
        if not args.dest:
            raise SystemExit("publish needs --dest")
        written = publish(runs, args.dest, out=out)
        print(f"published {len(written)} finished runs of {len(runs)} to {args.dest}")
        return 0
    records = collect(runs)
    report = [markdown_table(table, records)] + [
        markdown_table(table, records, m, title=f"The same runs: {m}") for m in table.extra_metrics
    ]
    text = "\n".join(report)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.csv:
        write_csv(table, records, args.csv)
    if args.plot:
        accuracy_by_column_figure(table, records).savefig(args.plot, dpi=120)
    if args.per_class_plot:
        column = args.per_class_column or list(table.columns)[-1]
        chosen = [run for run in runs if run.column == column and (not args.per_class_rows or run.row in args.per_class_rows)]
        per_class_figure(chosen, title=f"{table.name}: {column}").savefig(args.per_class_plot, dpi=120)
    if args.curves_plot:
        column = args.curves_column or list(table.columns)[0]
        chosen = [run for run in runs if run.column == column and (not args.curves_rows or run.row in args.curves_rows)]
        if args.curves_rows:  # the legend in the order asked for
            chosen.sort(key=lambda run: args.curves_rows.index(run.row))
        epoch_curves_figure(chosen, title=f"{table.name}: {column}, test accuracy per epoch").savefig(args.curves_plot, dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
