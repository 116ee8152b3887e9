"""Callbacks: diagnostics and figures for TensorBoard, the results file, and training schedules."""

from lt_noise.callbacks.figures import EvaluationFigures
from lt_noise.callbacks.results import ResultsWriter
from lt_noise.callbacks.schedules import DeferredReweighting

__all__ = ["DeferredReweighting", "EvaluationFigures", "ResultsWriter"]
