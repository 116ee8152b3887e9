"""The ``lt-noise`` command line: Lightning's CLI with the project's defaults and data -> model links.

    lt-noise fit --config configs/quickstart.yaml
    lt-noise fit --config configs/quickstart.yaml --ckpt_path last      # resume
    lt-noise test --config configs/quickstart.yaml --ckpt_path runs/.../checkpoints/last.ckpt
    lt-noise predict --config runs/.../config.yaml --ckpt_path runs/.../checkpoints/last.ckpt
    lt-noise label_issues --config runs/.../config.yaml --ckpt_path runs/.../checkpoints/last.ckpt
    lt-noise fit --config configs/quickstart.yaml --print_config        # the full, resolved config

What it adds to ``LightningCLI``:

- ``model`` may be any :class:`~lt_noise.methods.Classifier` subclass and ``data`` any
  :class:`~lt_noise.data.modules.LTNoiseDataModule` subclass (``class_path: PAL``, short names work);
- the datamodule's facts are linked into the model, so nobody types them twice: ``num_classes``,
  ``class_counts`` (observed, after noise), ``input_shape`` and ``noise_rate``;
- a ``checkpoint`` section (a :class:`ModelCheckpoint` that keeps ``last.ckpt`` for resuming);
- a ``predictions`` section (a :class:`~lt_noise.callbacks.PredictionWriter`): ``predict`` writes
  ``predictions.csv`` into the run's directory (the folder above ``checkpoints/`` of ``--ckpt_path``),
  one row per sample of the datamodule's ``predict_split``; ``--predictions.output`` and
  ``--predictions.top_k`` change the file and the number of classes listed;
- the method's default callbacks (results file, figures, fault tolerance, the label-issue report, its
  diagnostics: see ``Classifier.DEFAULT_CALLBACKS``) join ``trainer.callbacks`` at trainer setup, unless
  one of the type is configured there;
- ``test_after_fit`` (default true): ``fit`` ends by testing the final weights and printing the test
  metrics; the run's ``results.json`` then holds last, best and test figures;
- ``label_issues``: the label-issue report of a finished run (:func:`label_issues_main`);
- short errors: a config or option mistake prints one line naming the key (:mod:`lt_noise.cli_errors`);
  ``LT_NOISE_DEBUG=1`` or ``--debug`` shows the full report.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

import lt_noise.data.modules  # noqa: F401  (registers the datamodules for short class names)
import lt_noise.methods  # noqa: F401  (registers the methods for short class names)
from lt_noise.callbacks import LabelIssues, PredictionWriter
from lt_noise.callbacks.label_issues import REPORT_FILE
from lt_noise.callbacks.tables import run_directory
from lt_noise.cli_errors import (
    CONFIG_EXIT,
    DEBUG_ENV,
    DEBUG_FLAG,
    RUN_EXIT,
    ConfigError,
    condense_parse_error,
    debug_requested,
    describe_instantiation_error,
    error_message,
    is_user_error,
)
from lt_noise.data.modules import LTNoiseDataModule
from lt_noise.methods import Classifier

__all__ = ["LINKED_DATA_FACTS", "LTNoiseCLI", "LabelIssuesCLI", "label_issues_main", "main"]

# Datamodule attributes passed to the model's constructor of the same name.
LINKED_DATA_FACTS = ("num_classes", "class_counts", "input_shape", "noise_rate")
PROG = "lt-noise"
LABEL_ISSUES = "label_issues"


class LTNoiseArgumentParser(LightningArgumentParser):
    """Lightning's parser whose usage errors are one short message naming the config key
    (:func:`lt_noise.cli_errors.condense_parse_error`), unless details were asked for."""

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error or debug_requested():
            return super().error(message, ex)
        self._logger.error(message)
        sys.stderr.write(error_message(self.prog.replace(" [options]", ""), condense_parse_error(message)))
        self.exit(CONFIG_EXIT)


class LTNoiseCLI(LightningCLI):
    """LightningCLI over lt-noise's methods and datamodules (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("model_class", Classifier)
        kwargs.setdefault("datamodule_class", LTNoiseDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("parser_class", LTNoiseArgumentParser)
        # The program's name in usage and errors, also under `python -m lt_noise.cli`; the subcommand that is
        # not Lightning's in the main help.
        defaults = {"prog": PROG}
        if kwargs.get("run", True):
            defaults["epilog"] = (f"Also: {PROG} {LABEL_ISSUES} --config RUN/config.yaml --ckpt_path "
                                  f"RUN/checkpoints/last.ckpt (the label-issue report of a finished run; --help for more).")
        kwargs["parser_kwargs"] = {**defaults, **(kwargs.get("parser_kwargs") or {})}
        # The methods configure their own optimizers from `model.optimizer` / `model.lr_schedule`.
        kwargs.setdefault("auto_configure_optimizers", False)
        # Re-running a config into the same log directory must not fail on the saved config.yaml.
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for fact in LINKED_DATA_FACTS:
            parser.link_arguments(f"data.{fact}", f"model.init_args.{fact}", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, test the final weights and print the test metrics (ignored by other subcommands).",
        )

    def _subcommand_config(self) -> Any:
        return self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        # `predict` from a run's checkpoint writes into that run's directory: no new log directory with
        # only a config.yaml in it.
        if self.subcommand == "predict" and self._subcommand_config().get("ckpt_path"):
            self.save_config_callback = None

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as error:  # noqa: BLE001  (every failure here comes from the config)
            if debug_requested():
                raise
            raise describe_instantiation_error(error, self._subcommand_config()) from error

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)

    def predict(self, model: L.LightningModule, datamodule: L.LightningDataModule | None = None,
                return_predictions: bool | None = None, **kwargs: Any) -> None:
        """``trainer.predict`` without keeping the outputs in memory (the prediction writer has them); from a
        run's checkpoint without loggers, which would only open a new, empty log directory."""
        if kwargs.get("ckpt_path"):
            self.trainer.loggers = []
        self.trainer.predict(model, datamodule=datamodule, return_predictions=bool(return_predictions), **kwargs)


# --------------------------------------------------------------------------------------------------
# lt-noise label_issues
class LabelIssuesCLI(LTNoiseCLI):
    """The parser of ``lt-noise label_issues``: a run's config (its ``config.yaml``) plus ``--ckpt_path`` and
    ``--output``; builds the model, datamodule and trainer without running anything."""

    def __init__(self, args: list[str] | None = None) -> None:
        super().__init__(args=args, run=False, save_config_callback=None,
                         parser_kwargs={"prog": f"{PROG} {LABEL_ISSUES}",
                                        "description": "Write the label-issue report of a finished run."})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="The run's checkpoint (required), e.g. runs/NAME/version_N/checkpoints/last.ckpt.")
        parser.add_argument("--output", type=str | None, default=None,
                            help="The report's CSV (default: label_issues.csv in the run's directory; a bare file "
                                 "name goes into the run's directory too).")
        parser.add_argument("--weights_only", type=bool | None, default=None,
                            help="Accepted so that a run's config.yaml parses; unused.")


def saved_label_issue_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The :class:`~lt_noise.callbacks.LabelIssues` state in a checkpoint (the default report's, if several)."""
    states = {key: state for key, state in (checkpoint.get("callbacks") or {}).items() if key.startswith("LabelIssues")}
    for key, state in states.items():
        if f"'filename': '{REPORT_FILE}'" in key:
            return state
    return next(iter(states.values()), None)


def write_label_issues(trainer: L.Trainer, model: L.LightningModule, datamodule: LTNoiseDataModule, ckpt_path: str,
                       output: str | Path | None = None) -> Path | None:
    """The label-issue report of the run whose checkpoint is ``ckpt_path``, written to ``output`` (default:
    ``label_issues.csv`` in the run's directory; a bare file name goes there too): from the checkpoint's
    :class:`LabelIssues` state (the training dynamics) when it has one, else from one pass of its model
    over the training set (the final model's margins: ``trainer.predict`` of ``predict_split: train``).
    Returns the path on rank 0."""
    if output is not None and Path(output).name != str(output):
        path = Path(output).expanduser()  # a path with a folder: as it is
    else:  # the run's directory (a bare file name too, as for predictions.csv)
        path = run_directory(ckpt_path, None) / (str(output) if output is not None else REPORT_FILE)
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = saved_label_issue_state(checkpoint)
    if state is not None:
        rank_zero_info(f"Label issues of {ckpt_path}: from the training dynamics saved in the checkpoint")
        callback = LabelIssues(filename=path.name, dirpath=str(path.parent), adjust=state.get("adjust", "none"),
                               score=state.get("score", "balanced_margin"))
        callback.load_state_dict(state)
        if callback.num_samples != datamodule.train_size:
            raise ValueError(
                f"Expected the config's datamodule to compose the run's {callback.num_samples} training samples, but it "
                f"composes {datamodule.train_size} (is --config the run's own config.yaml?)"
            )
        return callback.write_files(path, datamodule) if trainer.is_global_zero else None
    rank_zero_info(f"Label issues of {ckpt_path}: no training dynamics in the checkpoint (it predates the report); "
                   "scoring with one pass of its model over the training set")
    callback = LabelIssues(filename=path.name, dirpath=str(path.parent), figures=True, from_predictions=True)
    datamodule.predict_split = "train"
    # Only this report: no predictions.csv of the training set over a real one.
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, BasePredictionWriter)] + [callback]
    trainer.loggers = []  # nothing to log; a logger would open a new, empty log directory
    trainer.predict(model, datamodule=datamodule, ckpt_path=ckpt_path, return_predictions=False)
    return callback.report_path


def label_issues_main(args: list[str]) -> Path | None:
    """``lt-noise label_issues --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt [--output F]``."""
    cli = LabelIssuesCLI(args=args)
    ckpt_path = cli.config.get("ckpt_path")
    if not ckpt_path:
        raise ConfigError("ckpt_path", "Expected the run's checkpoint (--ckpt_path RUN/checkpoints/last.ckpt), but got none")
    if not Path(ckpt_path).is_file():
        raise ConfigError("ckpt_path", f"Expected an existing checkpoint file, but got {ckpt_path!r}")
    return write_label_issues(cli.trainer, cli.model, cli.datamodule, ckpt_path, cli.config.get("output"))


# --------------------------------------------------------------------------------------------------
def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lt-noise`` console script."""
    # A deprecation inside Lightning 2.6 itself (torch's pytree API), printed on every run; nothing a
    # user can act on.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    # The arguments are handed to the CLI explicitly (without --debug), also when they come from sys.argv.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    argv = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(argv)
    switched_on = debug and DEBUG_ENV not in os.environ
    if switched_on:
        os.environ[DEBUG_ENV] = "1"  # for the parser, and for DDP processes started from this one
    argv = [a for a in argv if a != DEBUG_FLAG]
    command = f"{PROG} {argv[0]}" if argv and not argv[0].startswith("-") else PROG
    try:
        if argv and argv[0] == LABEL_ISSUES:
            label_issues_main(argv[1:])
        else:
            LTNoiseCLI(args=argv)
    except SIGTERMException:
        # Lightning stops on SIGTERM with a bare SystemExit (status 0); a pre-empted run must not look
        # finished to a scheduler or the sweep: exit with the conventional 128 + SIGTERM.
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:  # noqa: BLE001
        if debug or not is_user_error(error):
            raise
        sys.stderr.write(error_message(command, str(error)))
        sys.exit(CONFIG_EXIT if isinstance(error, ConfigError) else RUN_EXIT)
    finally:
        if switched_on:
            del os.environ[DEBUG_ENV]
        # Lightning leaves the DDP process group alive; torn down by the interpreter's exit, gloo's
        # threads can abort the process ("terminate called without an active exception") after a
        # successful run. Destroy it while the process is still orderly.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
