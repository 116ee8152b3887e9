"""Reproduction sweeps: run a table's rows x columns x seeds with ``lt-noise fit``, resume an interrupted
sweep, and aggregate the runs' ``results.json`` into markdown / CSV tables beside the paper's numbers.

A *table file* (YAML, in ``tools/tables/``) says what to run and what the paper reported::

    name: pal_table3_cifar10
    caption: "PAL Table 3: CIFAR-10, symmetric noise, test accuracy (%)"
    metric: last_acc              # last_acc | best_acc | test_acc | many | medium | few
    seeds: [0, 1, 2]
    base: {trainer: {max_epochs: 120}}      # optional overrides applied to every run
    rows:                          # methods: a config and optional overrides
      CE: {config: configs/apl_cifar10_ce.yaml}
      CE+FNPAL: {config: configs/pal_cifar10_ce_fnpal.yaml}
    columns:                       # settings: overrides by dotted key
      "0.2": {data.init_args.noise: symmetric, data.init_args.noise_rate: 0.2}
      "0.4": {data.init_args.noise: symmetric, data.init_args.noise_rate: 0.4}
    paper:                         # the paper's numbers, transcribed once (row -> column -> value)
      CE: {"0.2": 86.98, "0.4": 81.88}

Beyond rows x columns x seeds (all optional)::

    order: columns                 # plan column by column (the most telling column first), not row by row
    columns:
      "0.6": {data.init_args.noise_rate: 0.6, default: false}   # listed, run only with --columns
      "0.8 full": {data.init_args.max_train_per_class: null, rows: [CE]}  # only these rows run it
    rows:
      CE:
        config: configs/x.yaml
        cells:                     # per (row, column): overrides and seeds of that cell only
          "0.8": {seeds: [0, 1, 2]}
          "0.4": {model.init_args.tau: 2.6}

    x_values: {clean: 0.0, "0.4": 0.4}  # numeric x of the accuracy-by-column figure (those columns only)
    x_label: symmetric noise rate

Overrides are dotted keys (they contain a dot); the plain words ``default``, ``rows`` (columns) and
``seeds`` (cells) are the options above, and any other plain word is an error.

Each run gets its own directory ``<out>/<row>/<column>/seed<k>/`` with the merged ``config.yaml``, the
TensorBoard logs, ``checkpoints/last.ckpt`` and ``results.json``. A run whose ``results.json`` holds a
``fit`` section is finished and never redone; a run with a checkpoint but no results is resumed from the
newer of ``last.ckpt`` and ``interrupted.ckpt`` (saved on SIGTERM; ``--ckpt_path``); anything else
starts from scratch. ``shard=(i, n)`` runs every n-th run starting at
i, for array jobs on a cluster.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "METRICS",
    "Run",
    "Table",
    "aggregate",
    "collect",
    "load_table",
    "markdown_table",
    "plan_runs",
    "publish",
    "report_columns",
    "run_sweep",
    "select_columns",
    "write_csv",
]

# Where each reported metric lives in results.json (section, key); accuracies are reported in percent.
METRICS = {
    "last_acc": ("fit.last", "acc"),
    "best_acc": ("fit.best", "acc"),
    "test_acc": ("test", "acc"),
    "many": ("fit.last", "many"),
    "medium": ("fit.last", "medium"),
    "few": ("fit.last", "few"),
    "ece": ("fit.last", "ece"),
}
RESULTS_FILE = "results.json"


ORDERS = ("rows", "columns")


@dataclass(frozen=True)
class Table:
    """A parsed table file. ``rows`` and ``columns`` hold the dotted overrides only; the options live in
    ``optional_columns``, ``column_rows`` and ``cells`` (see the module docstring)."""

    name: str
    caption: str
    rows: dict[str, dict[str, Any]]
    columns: dict[str, dict[str, Any]]
    seeds: tuple[int, ...] = (0, 1, 2)
    metric: str = "last_acc"
    extra_metrics: tuple[str, ...] = ()
    base: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, dict[str, float]] = field(default_factory=dict)
    source: Path | None = None
    order: str = "rows"
    optional_columns: tuple[str, ...] = ()
    column_rows: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    x_values: dict[str, float] = field(default_factory=dict)
    x_label: str = ""

    @property
    def default_columns(self) -> list[str]:
        """The columns a plain ``run`` plans (all but those marked ``default: false``)."""
        return [c for c in self.columns if c not in self.optional_columns]

    def has_cell(self, row: str, column: str) -> bool:
        """Whether ``row`` runs ``column`` at all (a column may be restricted to some rows)."""
        return column not in self.column_rows or row in self.column_rows[column]

    def cell_seeds(self, row: str, column: str) -> tuple[int, ...]:
        """The seeds of one cell: its own ``seeds``, else the table's."""
        return tuple(int(s) for s in self.cells.get((row, column), {}).get("seeds", self.seeds))

    def cell_overrides(self, row: str, column: str) -> dict[str, Any]:
        return {k: v for k, v in self.cells.get((row, column), {}).items() if k != "seeds"}


@dataclass(frozen=True)
class Run:
    row: str
    column: str
    seed: int
    config: Path
    overrides: dict[str, Any]
    directory: Path


def load_table(path: str | os.PathLike) -> Table:
    """Read and validate a table file (see the module docstring)."""
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"Expected a mapping in table file {path}, but got {type(spec).__name__}")
    for key in ("name", "rows", "columns"):
        if key not in spec:
            raise ValueError(f"Expected key {key!r} in table file {path}")
    metric = spec.get("metric", "last_acc")
    extra = tuple(spec.get("extra_metrics", ()))
    for name in (metric, *extra):
        if name not in METRICS:
            raise ValueError(f"Expected metrics from {sorted(METRICS)} in {path}, but got {name!r}")
    order = spec.get("order", "rows")
    if order not in ORDERS:
        raise ValueError(f"Expected `order` in {ORDERS} in {path}, but got {order!r}")
    rows: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    row_cells: dict[str, dict[str, Any]] = {}
    for row, settings in spec["rows"].items():
        settings = dict(settings or {})
        if "config" not in settings:
            raise ValueError(f"Expected a `config` for row {row!r} in {path}")
        row_cells[str(row)] = dict(settings.pop("cells", None) or {})
        _check_options(settings, {"config"}, f"row {row!r}", path)
        rows[str(row)] = settings
    columns: dict[str, dict[str, Any]] = {}
    optional: list[str] = []
    column_rows: dict[str, tuple[str, ...]] = {}
    for column, settings in spec["columns"].items():
        column, settings = str(column), dict(settings or {})
        if not settings.pop("default", True):
            optional.append(column)
        if "rows" in settings:
            column_rows[column] = tuple(str(r) for r in settings.pop("rows"))
            unknown = sorted(set(column_rows[column]) - set(rows))
            if unknown:
                raise ValueError(f"Expected rows of the table for column {column!r} in {path}, but got {unknown}")
        _check_options(settings, set(), f"column {column!r}", path)
        columns[column] = settings
    for row, by_column in row_cells.items():
        for column, settings in by_column.items():
            if str(column) not in columns:
                raise ValueError(f"Expected a column of the table in the cells of row {row!r} in {path}, but got {column!r}")
            settings = dict(settings or {})
            _check_options(settings, {"seeds"}, f"cell ({row!r}, {column!r})", path)
            cells[(row, str(column))] = settings
    paper = {str(r): {str(c): float(v) for c, v in (cols or {}).items()} for r, cols in (spec.get("paper") or {}).items()}
    unknown = sorted(set(spec.get("x_values") or {}) - set(columns))
    if unknown:
        raise ValueError(f"Expected columns of the table in `x_values` of {path}, but got {unknown}")
    return Table(
        name=str(spec["name"]),
        caption=str(spec.get("caption", spec["name"])),
        rows=rows,
        columns=columns,
        seeds=tuple(int(s) for s in spec.get("seeds", (0, 1, 2))),
        metric=metric,
        extra_metrics=extra,
        base=dict(spec.get("base") or {}),
        paper=paper,
        source=path,
        order=order,
        x_values={str(c): float(v) for c, v in (spec.get("x_values") or {}).items()},
        x_label=str(spec.get("x_label", "")),
        optional_columns=tuple(optional),
        column_rows=column_rows,
        cells=cells,
    )


def _check_options(settings: dict[str, Any], allowed: set[str], where: str, path: Path) -> None:
    """Keys of a row, column or cell are dotted overrides or one of the ``allowed`` plain options."""
    unknown = sorted(k for k in settings if "." not in str(k) and k not in allowed)
    if unknown:
        raise ValueError(
            f"Expected dotted overrides (like data.init_args.noise_rate) or the options {sorted(allowed)} in "
            f"{where} of {path}, but got {unknown}"
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def select_columns(table: Table, columns: Sequence[str] | None) -> list[str]:
    """``columns`` checked against the table (None: its default columns; ``["all"]``: every column)."""
    if columns is None:
        return table.default_columns
    if list(columns) == ["all"]:
        return list(table.columns)
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise ValueError(f"Expected columns of table {table.name!r} from {list(table.columns)}, but got {unknown}")
    return [c for c in table.columns if c in columns]


def plan_runs(
    table: Table,
    out: Path,
    *,
    seeds: Sequence[int] | None = None,
    root: Path | None = None,
    columns: Sequence[str] | None = None,
    rows: Sequence[str] | None = None,
) -> list[Run]:
    """Every (row, column, seed) run of the table: row-major, or column-major with ``order: columns``.

    ``seeds`` replaces every cell's seeds; ``columns`` chooses columns (see :func:`select_columns`);
    ``rows`` keeps only these rows and plans them in the order given (a row's runs in the table's order).
    """
    root = root or Path.cwd()
    chosen = select_columns(table, columns)
    pairs = [(r, c) for r in table.rows for c in chosen]
    if table.order == "columns":
        pairs = [(r, c) for c in chosen for r in table.rows]
    if rows is not None:
        unknown = [r for r in rows if r not in table.rows]
        if unknown:
            raise ValueError(f"Expected rows of table {table.name!r} from {list(table.rows)}, but got {unknown}")
        pairs = [(r, c) for row in dict.fromkeys(rows) for r, c in pairs if r == row]
    runs = []
    for row, column in pairs:
        if not table.has_cell(row, column):
            continue
        settings = table.rows[row]
        config = Path(settings["config"])
        config = config if config.is_absolute() else root / config
        row_overrides = {k: v for k, v in settings.items() if k != "config"}
        overrides = {**_flatten(table.base), **row_overrides, **table.columns[column], **table.cell_overrides(row, column)}
        for seed in seeds if seeds is not None else table.cell_seeds(row, column):
            directory = out / _slug(row) / _slug(column) / f"seed{seed}"
            runs.append(Run(row, column, int(seed), config, overrides, directory))
    return runs


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and not {"class_path", "init_args"} & set(value):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def run_config(run: Run, *, devices: int = 1) -> dict[str, Any]:
    """The run's full config: the row's config file, the overrides, the seed, and per-run output paths."""
    config = yaml.safe_load(run.config.read_text())
    for dotted, value in run.overrides.items():
        _set(config, dotted, value)
    config["seed_everything"] = run.seed
    _set(config, "data.init_args.seed", run.seed)
    trainer = config.setdefault("trainer", {})
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": str(run.directory), "name": "", "version": ""},
    }
    trainer["default_root_dir"] = str(run.directory)
    trainer["enable_progress_bar"] = False
    if devices > 1:
        trainer.update(devices=devices, strategy="ddp")
    config["checkpoint"] = {**(config.get("checkpoint") or {}), "dirpath": str(run.directory / "checkpoints"), "save_last": True}
    return config


def resume_checkpoint(run: Run) -> Path | None:
    """The newest of the run's ``last.ckpt`` (epoch end) and ``interrupted.ckpt`` (SIGTERM), if any."""
    found = [p for p in (run.directory / "checkpoints" / n for n in ("last.ckpt", "interrupted.ckpt")) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def status(run: Run) -> str:
    """``"done"`` (results with a fit section), ``"partial"`` (a checkpoint to resume) or ``"todo"``."""
    results = run.directory / RESULTS_FILE
    if results.is_file():
        try:
            if "fit" in json.loads(results.read_text()):
                return "done"
        except json.JSONDecodeError:
            pass
    return "partial" if resume_checkpoint(run) is not None else "todo"


def run_sweep(
    runs: Iterable[Run],
    *,
    devices: int = 1,
    shard: tuple[int, int] = (0, 1),
    dry_run: bool = False,
    log=print,
    command: Sequence[str] = (sys.executable, "-m", "lt_noise.cli"),
) -> list[tuple[Run, str]]:
    """Run what is not finished (this shard's share), sequentially; return (run, outcome) pairs."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"Expected shard index in [0, {count}), but got {index}")
    outcomes = []
    for i, run in enumerate(runs):
        if i % count != index:
            continue
        state = status(run)
        if state == "done":
            outcomes.append((run, "skipped (done)"))
            continue
        args = [*command, "fit", "--config", str(run.directory / "config.yaml")]
        if state == "partial":
            args += ["--ckpt_path", str(resume_checkpoint(run))]
        log(f"[{i + 1}] {run.row} | {run.column} | seed {run.seed}: {'resume' if state == 'partial' else 'start'}")
        if dry_run:
            outcomes.append((run, "dry run"))
            continue
        run.directory.mkdir(parents=True, exist_ok=True)
        config_file = run.directory / "config.yaml"
        # A resumed run keeps the config it started with: a table or config edited since then must not
        # change a run halfway (edits apply to the runs that start after them).
        if state != "partial" or not config_file.is_file():
            config_file.write_text(yaml.safe_dump(run_config(run, devices=devices), sort_keys=False))
        started = time.time()
        with open(run.directory / "stdout.log", "a") as stdout:
            code = subprocess.call(args, stdout=stdout, stderr=subprocess.STDOUT)
        if code == 0 and status(run) == "done":
            outcome = f"ok in {time.time() - started:.0f}s"
        else:
            outcome = f"FAILED (exit {code}; see {run.directory}/stdout.log)"
        log(f"    {outcome}")
        outcomes.append((run, outcome))
    return outcomes


def publish(runs: Iterable[Run], destination: Path, *, out: Path, root: Path | None = None) -> list[Path]:
    """Copy every finished run's ``config.yaml`` and ``results.json`` to ``destination`` (same layout),
    with the run's output paths made relative to the repository (``runs/...``), so that the published
    config re-runs the cell with ``lt-noise fit --config`` on any machine. Returns the directories written."""
    written = []
    for run in runs:
        if status(run) != "done":
            continue
        relative = run.directory.relative_to(out)
        target = destination / relative
        target.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((run.directory / "config.yaml").read_text())
        local = Path("runs") / "reruns" / destination.name / relative
        config["trainer"]["logger"]["init_args"]["save_dir"] = str(local)
        config["trainer"]["default_root_dir"] = str(local)
        config["checkpoint"]["dirpath"] = str(local / "checkpoints")
        (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (target / RESULTS_FILE).write_text((run.directory / RESULTS_FILE).read_text())
        written.append(target)
    return written


def _metric(results: dict[str, Any], name: str) -> float | None:
    section, key = METRICS[name]
    node: Any = results
    for part in section.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    value = node.get(key) if isinstance(node, dict) else None
    return None if value is None else 100.0 * float(value)


def collect(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One record per finished run: row, column, seed and every metric (percent; None where absent)."""
    records = []
    for run in runs:
        path = run.directory / RESULTS_FILE
        if status(run) != "done":
            continue
        results = json.loads(path.read_text())
        records.append({"row": run.row, "column": run.column, "seed": run.seed, **{m: _metric(results, m) for m in METRICS}})
    return records


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    # Population standard deviation over seeds, as numpy.std (the papers' "mean ± std").
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def report_columns(table: Table, records: Sequence[dict[str, Any]]) -> list[str]:
    """The columns a report shows: the default ones and every optional one with a finished run."""
    done = {r["column"] for r in records}
    return [c for c in table.columns if c not in table.optional_columns or c in done]


def aggregate(table: Table, records: Sequence[dict[str, Any]], metric: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (row, column): mean, std and number of seeds of ``metric``, the expected seed count (0 for a
    cell the table does not run), the paper's number and our mean minus it."""
    metric = metric or table.metric
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in table.rows:
        for column in table.columns:
            found = [r for r in records if r["row"] == row and r["column"] == column]
            values = [r[metric] for r in found if r[metric] is not None]
            # The paper's numbers are of the table's main metric only.
            paper = table.paper.get(row, {}).get(column) if metric == table.metric else None
            expected = len(table.cell_seeds(row, column)) if table.has_cell(row, column) else 0
            cell: dict[str, Any] = {"n": len(values), "runs": len(found), "expected": expected, "paper": paper}
            if values:
                cell["mean"], cell["std"] = _mean_std(values)
                cell["diff"] = None if paper is None else cell["mean"] - paper
            cells[(row, column)] = cell
    return cells


def _format_cell(cell: dict[str, Any]) -> str:
    if cell["n"] == 0:
        # Finished runs without the metric (e.g. few-shot accuracy with no few-shot class) are not missing;
        # a cell the table does not run is blank.
        text = "—" if cell.get("runs") else "missing" if cell["expected"] else ""
    else:
        # One seed has no spread to report: "± 0.00" would claim one.
        text = f"{cell['mean']:.2f}" if cell["n"] == 1 else f"{cell['mean']:.2f} ± {cell['std']:.2f}"
        if cell["n"] < cell["expected"]:
            text += f" ({cell['n']}/{cell['expected']} seeds)"
    if cell["paper"] is not None:
        diff = "" if cell["n"] == 0 else f", {cell['diff']:+.2f}"
        text += f" [paper {cell['paper']:.2f}{diff}]"
    return text


def markdown_table(table: Table, records: Sequence[dict[str, Any]], metric: str | None = None,
                   title: str | None = None) -> str:
    """A markdown table: rows x columns, "mean ± std [paper p, ±diff]", missing runs shown as such;
    headed by ``title`` (the table's caption by default)."""
    metric = metric or table.metric
    cells = aggregate(table, records, metric)
    columns = report_columns(table, records)
    header = f"| {table.name} ({metric}) | " + " | ".join(columns) + " |"
    lines = [f"**{table.caption if title is None else title}**", "", header, "|" + "---|" * (len(columns) + 1)]
    for row in table.rows:
        lines.append(f"| {row} | " + " | ".join(_format_cell(cells[(row, c)]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv(table: Table, records: Sequence[dict[str, Any]], path: Path) -> None:
    """One line per (row, column, metric): mean, std, seeds found/expected, paper, difference."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "column", "metric", "mean", "std", "seeds", "expected_seeds", "paper", "diff"])
    for metric in (table.metric, *table.extra_metrics):
        shown = report_columns(table, records)
        for (row, column), cell in aggregate(table, records, metric).items():
            if column not in shown or not (cell["expected"] or cell["runs"]):
                continue  # an optional column nobody ran, or a cell the table does not run
            writer.writerow([row, column, metric, cell.get("mean"), cell.get("std"), cell["n"], cell["expected"],
                             cell["paper"], cell.get("diff")])
    path.write_text(buffer.getvalue())
