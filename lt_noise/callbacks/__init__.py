"""Callbacks: diagnostics and figures for TensorBoard, the results file, the label-issue report, and training
schedules.

Callbacks read the method through ``pl_module`` (its documented attributes) and never import
:mod:`lt_noise.methods` (DESIGN.md §1): they sit below the methods, which name their default callbacks
through :mod:`lt_noise.callbacks.defaults`.
"""

from lt_noise.callbacks.absgd import AttentionalWeightFigures
from lt_noise.callbacks.curriculum import CurriculumDiagnostics
from lt_noise.callbacks.defaults import build_default_callbacks, register_default_callback
from lt_noise.callbacks.dynamic_loss import DynamicLossDiagnostics
from lt_noise.callbacks.figures import EvaluationFigures
from lt_noise.callbacks.interrupt import InterruptCheckpoint
from lt_noise.callbacks.label_issues import LabelIssues
from lt_noise.callbacks.pal import PrototypeDiagnostics
from lt_noise.callbacks.predictions import PredictionWriter
from lt_noise.callbacks.results import ResultsWriter
from lt_noise.callbacks.schedules import ABSGDStages, DeferredReweighting

__all__ = [
    "ABSGDStages",
    "AttentionalWeightFigures",
    "CurriculumDiagnostics",
    "DeferredReweighting",
    "DynamicLossDiagnostics",
    "EvaluationFigures",
    "InterruptCheckpoint",
    "LabelIssues",
    "PredictionWriter",
    "PrototypeDiagnostics",
    "ResultsWriter",
    "build_default_callbacks",
    "register_default_callback",
]
