"""The LightningModules: :class:`Classifier` (ERM, the base class) and the five methods built on it."""

from lt_noise.methods.classifier import Classifier, NonFiniteLossError

__all__ = ["Classifier", "NonFiniteLossError"]
