"""Fault tolerance: a run stopped by SIGTERM (a cluster's pre-emption, ``kill``) or Ctrl-C leaves a
checkpoint to resume from.

Lightning turns SIGTERM into an exception at the next batch boundary (all DDP ranks together); this
callback then saves ``interrupted.ckpt`` beside the ``last.ckpt`` of the run's ModelCheckpoint. Resume
with ``--ckpt_path <dir>/interrupted.ckpt`` (the reproduction sweep picks the newest checkpoint itself).
A mid-epoch checkpoint resumes the interrupted epoch without repeating the optimizer steps already
taken; exact (bitwise) resume is guaranteed from epoch-end checkpoints (``last.ckpt``).
Other exceptions (a non-finite loss, a bug) save nothing, so the last good checkpoint stays the newest.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["INTERRUPTED_CHECKPOINT", "InterruptCheckpoint"]

INTERRUPTED_CHECKPOINT = "interrupted.ckpt"


class InterruptCheckpoint(Callback):
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or not trainer.training:
            return
        checkpointing = trainer.checkpoint_callback
        if checkpointing is None or checkpointing.dirpath is None:
            return
        trainer.save_checkpoint(str(Path(checkpointing.dirpath) / INTERRUPTED_CHECKPOINT))
