"""The sweep engine: planning, resume decisions and aggregation, on hand-written results files."""

import json
import math
from pathlib import Path

import pytest
import yaml
from support.cli import print_config

from lt_noise.sweep import collect, load_table, markdown_table, plan_runs, run_config, run_sweep, status, write_csv


@pytest.fixture()
def table(tmp_path):
    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "lt_noise.methods.Classifier"},
                                      "data": {"class_path": "X", "init_args": {"noise_rate": 0.0}}}))
    spec = {
        "name": "toy",
        "caption": "Toy table",
        "metric": "last_acc",
        "extra_metrics": ["few"],
        "seeds": [0, 1, 2],
        "base": {"trainer": {"max_epochs": 3}},
        "rows": {"CE": {"config": str(config)}, "GCE": {"config": str(config), "model.init_args.loss": "gce"}},
        "columns": {"0.2": {"data.init_args.noise_rate": 0.2}, "0.4": {"data.init_args.noise_rate": 0.4}},
        "paper": {"CE": {"0.2": 80.0, "0.4": 70.0}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_table(path)


def _write_results(run, acc, few=None, fit=True):
    run.directory.mkdir(parents=True, exist_ok=True)
    results = {"fit": {"last": {"acc": acc, "few": few}, "best": {"acc": acc + 0.01}}} if fit else {"test": {"acc": acc}}
    (run.directory / "results.json").write_text(json.dumps(results))


def test_plan_covers_rows_columns_and_seeds_with_merged_overrides(table, tmp_path):
    runs = plan_runs(table, tmp_path / "out")
    assert len(runs) == 2 * 2 * 3
    gce = next(r for r in runs if r.row == "GCE" and r.column == "0.4" and r.seed == 2)
    assert gce.overrides == {"trainer.max_epochs": 3, "model.init_args.loss": "gce", "data.init_args.noise_rate": 0.4}
    assert gce.directory == tmp_path / "out" / "GCE" / "0.4" / "seed2"
    config = run_config(gce)
    assert config["model"]["init_args"]["loss"] == "gce" and config["data"]["init_args"]["noise_rate"] == 0.4
    assert config["seed_everything"] == 2 and config["data"]["init_args"]["seed"] == 2
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(gce.directory)
    assert config["checkpoint"]["dirpath"] == str(gce.directory / "checkpoints")


def test_mean_std_over_seeds_and_missing_runs_are_shown(table, tmp_path):
    runs = plan_runs(table, tmp_path / "out")
    values = {0: 0.80, 1: 0.82, 2: 0.87}
    for run in runs:
        if run.row == "CE" and run.column == "0.2":
            _write_results(run, values[run.seed], few=0.5)
        if run.row == "GCE" and run.column == "0.2" and run.seed == 0:
            _write_results(run, 0.9)
    records = collect(runs)
    text = markdown_table(table, records)
    mean = sum(values.values()) / 3 * 100
    std = math.sqrt(sum((100 * v - mean) ** 2 for v in values.values()) / 3)
    assert f"{mean:.2f} ± {std:.2f} [paper 80.00, {mean - 80:+.2f}]" in text
    assert "missing [paper 70.00]" in text  # CE 0.4: no run finished
    assert "| 90.00 (1/3 seeds)" in text  # one seed: no spread claimed
    few = markdown_table(table, records, "few")
    assert "50.00 ± 0.00" in few and "paper" not in few.split("\n", 2)[2]
    gce = next(line for line in few.splitlines() if line.startswith("| GCE"))
    assert gce == "| GCE | — | missing |"  # 0.2: a finished run without few-shot classes; 0.4: no run


def test_csv_has_one_line_per_cell_and_metric(table, tmp_path):
    runs = plan_runs(table, tmp_path / "out")
    _write_results(runs[0], 0.5, few=0.25)
    write_csv(table, collect(runs), tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().strip().splitlines()
    assert lines[0].startswith("row,column,metric,mean") and len(lines) == 1 + 2 * 2 * 2
    assert lines[1].startswith("CE,0.2,last_acc,50.0,0.0,1,3,80.0,-30.0")


def test_resume_skips_finished_runs_and_resumes_partial_ones(table, tmp_path):
    runs = plan_runs(table, tmp_path / "out", seeds=[0])
    _write_results(runs[0], 0.5)  # finished
    (runs[1].directory / "checkpoints").mkdir(parents=True)
    (runs[1].directory / "checkpoints" / "last.ckpt").write_bytes(b"x")  # interrupted
    (runs[1].directory / "config.yaml").write_text("the config it started with\n")
    _write_results(runs[2], 0.5, fit=False)  # tested only: not a finished fit
    assert [status(r) for r in runs] == ["done", "partial", "todo", "todo"]
    calls = []

    def fake_call(args, **kwargs):
        calls.append(args)
        return 0

    import lt_noise.sweep as sweep

    original = sweep.subprocess.call
    sweep.subprocess.call = fake_call
    try:
        outcomes = run_sweep(runs, log=lambda *_: None, command=("lt-noise",))
    finally:
        sweep.subprocess.call = original
    assert outcomes[0][1] == "skipped (done)"
    assert len(calls) == 3
    assert calls[0][-2:] == ["--ckpt_path", str(runs[1].directory / "checkpoints" / "last.ckpt")]
    assert "--ckpt_path" not in calls[1]
    # the resumed run keeps its config (an edit of the table since it started must not change it halfway);
    # the runs that start get theirs
    assert (runs[1].directory / "config.yaml").read_text() == "the config it started with\n"
    assert yaml.safe_load((runs[2].directory / "config.yaml").read_text())["seed_everything"] == 0


def test_shards_partition_the_runs(table, tmp_path):
    runs = plan_runs(table, tmp_path / "out")
    seen = []
    for index in range(3):
        outcomes = run_sweep(runs, shard=(index, 3), dry_run=True, log=lambda *_: None)
        seen += [run.directory for run, _ in outcomes]
    assert sorted(seen) == sorted(r.directory for r in runs)
    with pytest.raises(ValueError, match="shard index"):
        run_sweep(runs, shard=(3, 3), dry_run=True)


def test_invalid_table_files_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "rows": {"A": {}}, "columns": {"c": {}}}))
    with pytest.raises(ValueError, match="config"):
        load_table(path)
    path.write_text(yaml.safe_dump({"name": "x", "rows": {"A": {"config": "a"}}, "columns": {}, "metric": "top5"}))
    with pytest.raises(ValueError, match="top5"):
        load_table(path)


def test_figures_plot_the_aggregated_means_and_per_class_accuracy_by_count(table, tmp_path):
    from lt_noise.sweep_plots import accuracy_by_column_figure, per_class_figure

    runs = plan_runs(table, tmp_path / "out")
    values = {("CE", "0.2"): [0.8, 0.9, 0.85], ("CE", "0.4"): [0.6, 0.7, 0.65], ("GCE", "0.4"): [0.5, 0.5, 0.8]}
    per_class = {0: [1.0, 0.5, 0.0], 1: [0.8, 0.3, 0.2], 2: [0.9, 0.4, 0.5]}  # classes of 30, 3 and 10 samples
    for run in runs:
        if (run.row, run.column) in values:
            _write_results(run, values[(run.row, run.column)][run.seed])
            results = json.loads((run.directory / "results.json").read_text())
            results.update(test={"per_class_acc": per_class[run.seed]}, data={"class_counts": [30, 3, 10]})
            (run.directory / "results.json").write_text(json.dumps(results))
    axis = accuracy_by_column_figure(table, collect(runs)).axes[0]
    lines = {bars.get_label(): bars.lines[0] for bars in axis.containers}  # errorbar: (data line, caps, bars)
    # Numeric column labels go on a numeric axis; GCE has no 0.2 run, so one point.
    assert list(lines["CE"].get_xdata()) == [0.2, 0.4]
    assert lines["CE"].get_ydata() == pytest.approx([85.0, 65.0])
    assert list(lines["GCE"].get_xdata()) == [0.4] and lines["GCE"].get_ydata() == pytest.approx([60.0])

    chosen = [run for run in runs if run.column == "0.4"]
    axis = per_class_figure(chosen, title="t").axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert set(lines) == {"CE", "GCE"}
    assert list(lines["CE"].get_xdata()) == [3, 10, 30]  # sorted by class count
    means = {c: 100 * sum(per_class[s][i] for s in range(3)) / 3 for i, c in enumerate([30, 3, 10])}
    assert lines["CE"].get_ydata() == pytest.approx([means[3], means[10], means[30]])


@pytest.fixture()
def cell_table(tmp_path):
    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "lt_noise.methods.Classifier"}}))
    spec = {
        "name": "cells",
        "seeds": [0],
        "order": "columns",
        "rows": {
            "CE": {"config": str(config), "cells": {"0.8": {"seeds": [0, 1, 2]}}},
            "MAE scale": {"config": str(config), "model.init_args.tau": 2.0,
                          "cells": {"0.8": {"model.init_args.tau": 4.0}}},
        },
        "columns": {
            "0.4": {"data.init_args.noise_rate": 0.4},
            "0.8": {"data.init_args.noise_rate": 0.8},
            "0.8 full": {"data.init_args.noise_rate": 0.8, "data.init_args.max_train_per_class": None, "rows": ["CE"]},
            "0.6": {"data.init_args.noise_rate": 0.6, "default": False},
        },
    }
    path = tmp_path / "cells.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_table(path)


def test_cells_set_their_own_seeds_and_overrides_and_columns_can_be_restricted(cell_table, tmp_path):
    runs = plan_runs(cell_table, tmp_path / "out")
    # column-major: all of 0.4, then 0.8 (CE with three seeds), then 0.8 full (CE only); 0.6 is optional
    assert [(r.row, r.column, r.seed) for r in runs] == [
        ("CE", "0.4", 0), ("MAE scale", "0.4", 0),
        ("CE", "0.8", 0), ("CE", "0.8", 1), ("CE", "0.8", 2), ("MAE scale", "0.8", 0),
        ("CE", "0.8 full", 0),
    ]
    taus = {r.column: r.overrides["model.init_args.tau"] for r in runs if r.row == "MAE scale"}
    assert taus == {"0.4": 2.0, "0.8": 4.0}  # the cell's override wins over the row's
    full = next(r for r in runs if r.column == "0.8 full")
    assert full.overrides["data.init_args.max_train_per_class"] is None
    assert "rows" not in full.overrides and "seeds" not in runs[2].overrides
    optional = plan_runs(cell_table, tmp_path / "out", columns=["0.6"])
    assert [(r.row, r.column) for r in optional] == [("CE", "0.6"), ("MAE scale", "0.6")]
    assert len(plan_runs(cell_table, tmp_path / "out", columns=["all"])) == len(runs) + 2
    with pytest.raises(ValueError, match="columns of table"):
        plan_runs(cell_table, tmp_path / "out", columns=["0.9"])


def test_report_expects_each_cells_seeds_and_leaves_cells_not_run_blank(cell_table, tmp_path):
    runs = plan_runs(cell_table, tmp_path / "out", columns=["all"])
    for run in runs:
        if run.column == "0.8" and run.row == "CE" and run.seed < 2:
            _write_results(run, 0.5 + 0.1 * run.seed)
    text = markdown_table(cell_table, collect(runs))
    ce, mae = (line for line in text.splitlines() if line.startswith(("| CE", "| MAE")))
    assert "| 0.4 | 0.8 | 0.8 full |" in text and "0.6" not in text  # the optional column: not run, not shown
    assert ce == "| CE | missing | 55.00 ± 5.00 (2/3 seeds) | missing |"
    assert mae == "| MAE scale | missing | missing |  |"  # MAE scale does not run "0.8 full"
    write_csv(cell_table, collect(runs), tmp_path / "c.csv")
    rows = [line.split(",")[:2] for line in (tmp_path / "c.csv").read_text().splitlines()[1:]]
    assert ["MAE scale", "0.8 full"] not in rows and ["CE", "0.6"] not in rows and ["CE", "0.8 full"] in rows


@pytest.mark.parametrize("bad,match", [
    ({"columns": {"c": {"noise_rate": 0.2}}}, r"dotted overrides .* but got \['noise_rate'\]"),
    ({"columns": {"c": {"rows": ["B"]}}}, "rows of the table"),
    ({"rows": {"A": {"config": "a", "cells": {"d": {}}}}}, "column of the table"),
    ({"rows": {"A": {"config": "a", "cells": {"c": {"seed": [1]}}}}}, r"options \['seeds'\]"),
    ({"order": "diagonal"}, "order"),
])
def test_table_options_are_checked(tmp_path, bad, match):
    spec = {"name": "x", "rows": {"A": {"config": "a"}}, "columns": {"c": {}}, **bad}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=match):
        load_table(path)


def test_publish_copies_finished_runs_with_relative_output_paths(table, tmp_path):
    from lt_noise.sweep import publish

    out = tmp_path / "out"
    runs = plan_runs(table, out, seeds=[0])
    _write_results(runs[0], 0.5)
    (runs[0].directory / "config.yaml").write_text(yaml.safe_dump(run_config(runs[0])))
    written = publish(runs, tmp_path / "docs" / "toy", out=out)
    assert written == [tmp_path / "docs" / "toy" / "CE" / "0.2" / "seed0"]  # only the finished run
    config = yaml.safe_load((written[0] / "config.yaml").read_text())
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs/reruns/toy/CE/0.2/seed0"
    assert config["checkpoint"]["dirpath"] == "runs/reruns/toy/CE/0.2/seed0/checkpoints"
    assert json.loads((written[0] / "results.json").read_text())["fit"]["last"]["acc"] == 0.5
    # The published copy is a sweep directory of its own: the report reads it.
    republished = plan_runs(table, tmp_path / "docs" / "toy", seeds=[0])
    assert [r["last_acc"] for r in collect(republished)] == [50.0]


def test_x_values_place_columns_on_a_numeric_axis(tmp_path):
    from lt_noise.sweep_plots import accuracy_by_column_figure, epoch_curves_figure

    config = tmp_path / "ce.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "lt_noise.methods.Classifier"}}))
    spec = {"name": "x", "seeds": [0, 1], "rows": {"CE": {"config": str(config)}},
            "columns": {"clean": {}, "sym 0.8": {"a.b": 1}, "asym 0.4": {"a.b": 2}},
            "x_values": {"clean": 0.0, "sym 0.8": 0.8}, "x_label": "symmetric noise rate"}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(spec))
    table = load_table(path)
    runs = plan_runs(table, tmp_path / "out")
    for run in runs:
        _write_results(run, {"clean": 0.9, "sym 0.8": 0.3, "asym 0.4": 0.6}[run.column] + 0.02 * run.seed)
        results = json.loads((run.directory / "results.json").read_text())
        results["fit"]["history"] = [{"acc": a} for a in ([0.5, 0.7, 0.4] if run.seed == 0 else [0.6, 0.8, 0.2])]
        (run.directory / "results.json").write_text(json.dumps(results))
    axis = accuracy_by_column_figure(table, collect(runs)).axes[0]
    line = axis.containers[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.8] and line.get_ydata() == pytest.approx([91.0, 31.0])
    assert axis.get_xlabel() == "symmetric noise rate"
    curves = epoch_curves_figure([r for r in runs if r.column == "clean"], title="t").axes[0]
    mean = curves.get_lines()[0]
    assert list(mean.get_xdata()) == [1, 2, 3] and mean.get_ydata() == pytest.approx([55.0, 75.0, 30.0])
    assert mean.get_label() == "CE (2 seeds)"
    spec["x_values"] = {"dirty": 1.0}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="x_values"):
        load_table(path)


TABLES = sorted((Path(__file__).resolve().parents[1] / "tools" / "tables").glob("*.yaml"))


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_every_row_of_the_shipped_tables_parses_with_the_cli(path, tmp_path):
    """Each row's config with its overrides (in the first column that runs it, optional columns included) is
    a valid CLI config: the ABSGD rows' stage callbacks, DRW, the methods' arguments (print_config
    instantiates nothing)."""
    root = Path(__file__).resolve().parents[1]
    table = load_table(path)
    seen = set()
    for run in plan_runs(table, out=tmp_path / "runs", root=root, seeds=[0], columns=["all"]):
        if run.row in seen:
            continue
        seen.add(run.row)
        config = tmp_path / f"{len(seen)}.yaml"
        config.write_text(yaml.safe_dump(run_config(run)))
        parsed = print_config("--config", str(config))
        assert parsed["model"]["class_path"].startswith("lt_noise.methods."), run.row
        if parsed["model"]["class_path"].endswith("ABSGD"):  # stages as the callback, not the deprecated arguments
            init_args = parsed["model"]["init_args"]
            assert init_args["stage2_epoch"] == 0 and init_args["stage2_freeze"] == "none", run.row
    assert seen == set(table.rows)


def test_rows_restrict_the_plan_and_set_its_order(table, tmp_path):
    runs = plan_runs(table, tmp_path, rows=["GCE", "CE"], seeds=[0])
    assert [(r.row, r.column) for r in runs] == [("GCE", "0.2"), ("GCE", "0.4"), ("CE", "0.2"), ("CE", "0.4")]
    assert [r.row for r in plan_runs(table, tmp_path, rows=["GCE"])] == ["GCE"] * 6
    with pytest.raises(ValueError, match=r"Expected rows of table 'toy' .*but got \['NSL'\]"):
        plan_runs(table, tmp_path, rows=["NSL"])
