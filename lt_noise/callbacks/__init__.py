"""Callbacks: diagnostics and figures for TensorBoard, the results file, and training schedules."""

from lt_noise.callbacks.absgd import AttentionalWeightFigures
from lt_noise.callbacks.curriculum import CurriculumDiagnostics
from lt_noise.callbacks.dynamic_loss import DynamicLossDiagnostics
from lt_noise.callbacks.figures import EvaluationFigures
from lt_noise.callbacks.interrupt import InterruptCheckpoint
from lt_noise.callbacks.pal import PrototypeDiagnostics
from lt_noise.callbacks.results import ResultsWriter
from lt_noise.callbacks.schedules import DeferredReweighting

__all__ = ["AttentionalWeightFigures", "CurriculumDiagnostics", "DeferredReweighting", "DynamicLossDiagnostics", "EvaluationFigures", "InterruptCheckpoint", "PrototypeDiagnostics", "ResultsWriter"]
