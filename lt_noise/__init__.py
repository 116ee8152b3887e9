"""lt-noise: image classification with long-tailed and noisy labels, as PyTorch Lightning modules.

Subpackages: :mod:`lt_noise.data` (corruption, subsampling, datamodules), :mod:`lt_noise.models`
(backbones and heads), :mod:`lt_noise.losses` (per-sample losses), :mod:`lt_noise.methods` (the
LightningModules) and :mod:`lt_noise.callbacks` (diagnostics, schedules); shared by all of them:
:mod:`lt_noise.validation`, :mod:`lt_noise.distributed` and :mod:`lt_noise.seeding`. ``lt-noise`` is the
command line. Imports point down those layers (docs/conventions.md, ``python tools/check_layers.py``).
"""

__version__ = "0.1.0"
