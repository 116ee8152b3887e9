"""The LightningModules: :class:`Classifier` (ERM, the base class) and the five methods built on it."""

from lt_noise.methods.absgd import ABSGD
from lt_noise.methods.classifier import Classifier, NonFiniteLossError
from lt_noise.methods.curriculum import Curriculum
from lt_noise.methods.dynamic_loss import DynamicLoss
from lt_noise.methods.mislas import MiSLAS
from lt_noise.methods.mixup import MixupClassifier
from lt_noise.methods.pal import FNPAL, PAL

__all__ = ["ABSGD", "Classifier", "Curriculum", "DynamicLoss", "FNPAL", "MiSLAS", "MixupClassifier", "NonFiniteLossError", "PAL"]
