"""The ``lt-noise`` command line: Lightning's CLI with the project's defaults and data -> model links.

    lt-noise fit --config configs/quickstart.yaml
    lt-noise fit --config configs/quickstart.yaml --ckpt_path last      # resume
    lt-noise test --config configs/quickstart.yaml --ckpt_path runs/.../checkpoints/last.ckpt
    lt-noise fit --config configs/quickstart.yaml --print_config        # the full, resolved config

What it adds to ``LightningCLI``:

- ``model`` may be any :class:`~lt_noise.methods.Classifier` subclass and ``data`` any
  :class:`~lt_noise.data.modules.LTNoiseDataModule` subclass (``class_path: PAL``, short names work);
- the datamodule's facts are linked into the model, so nobody types them twice: ``num_classes``,
  ``class_counts`` (observed, after noise), ``input_shape`` and ``noise_rate``;
- a ``checkpoint`` section (a :class:`ModelCheckpoint` that keeps ``last.ckpt`` for resuming);
- the method's default callbacks (results file, figures, fault tolerance, its diagnostics: see
  ``Classifier.DEFAULT_CALLBACKS``) join ``trainer.callbacks`` at trainer setup, unless one of the type is
  configured there;
- ``test_after_fit`` (default true): ``fit`` ends by testing the final weights and printing the test
  metrics; the run's ``results.json`` then holds last, best and test figures.
"""

from __future__ import annotations

import signal
import sys
import warnings

import torch.distributed as dist
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

import lt_noise.data.modules  # noqa: F401  (registers the datamodules for short class names)
import lt_noise.methods  # noqa: F401  (registers the methods for short class names)
from lt_noise.data.modules import LTNoiseDataModule
from lt_noise.methods import Classifier

__all__ = ["LINKED_DATA_FACTS", "LTNoiseCLI", "main"]

# Datamodule attributes passed to the model's constructor of the same name.
LINKED_DATA_FACTS = ("num_classes", "class_counts", "input_shape", "noise_rate")


class LTNoiseCLI(LightningCLI):
    """LightningCLI over lt-noise's methods and datamodules (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("model_class", Classifier)
        kwargs.setdefault("datamodule_class", LTNoiseDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
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
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After `fit`, test the final weights and print the test metrics (ignored by other subcommands).",
        )

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``lt-noise`` console script."""
    # A deprecation inside Lightning 2.6 itself (torch's pytree API), printed on every run; nothing a
    # user can act on.
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    try:
        LTNoiseCLI(args=args)
    except SIGTERMException:
        # Lightning stops on SIGTERM with a bare SystemExit (status 0); a pre-empted run must not look
        # finished to a scheduler or the sweep: exit with the conventional 128 + SIGTERM.
        sys.exit(128 + signal.SIGTERM)
    finally:
        # Lightning leaves the DDP process group alive; torn down by the interpreter's exit, gloo's
        # threads can abort the process ("terminate called without an active exception") after a
        # successful run. Destroy it while the process is still orderly.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
