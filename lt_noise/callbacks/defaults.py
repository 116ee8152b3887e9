"""Default callbacks by name: what every run of a method gets unless its trainer has one of the type.

A method names its defaults (``Classifier.DEFAULT_CALLBACKS``, extended by PAL, FNPAL and ABSGD) and
builds them here, in the callbacks layer, so that no method imports a callback class for it, and the
same defaults serve the CLI and a plain ``L.Trainer(...).fit(model, data)`` (the base method's
``configure_callbacks``). Register your own callback to name it in your method's defaults::

    register_default_callback("MyDiagnostics", MyDiagnostics)

    class MyMethod(Classifier):
        DEFAULT_CALLBACKS = Classifier.DEFAULT_CALLBACKS + ("MyDiagnostics",)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lightning.pytorch.callbacks import Callback

from lt_noise.callbacks.absgd import AttentionalWeightFigures
from lt_noise.callbacks.figures import EvaluationFigures
from lt_noise.callbacks.interrupt import InterruptCheckpoint
from lt_noise.callbacks.label_issues import LabelIssues
from lt_noise.callbacks.pal import PrototypeDiagnostics
from lt_noise.callbacks.results import ResultsWriter

__all__ = ["DEFAULT_CALLBACKS", "build_default_callbacks", "register_default_callback"]

#: name -> factory of a callback with its default settings.
DEFAULT_CALLBACKS: dict[str, Callable[[], Callback]] = {
    "ResultsWriter": ResultsWriter,
    "EvaluationFigures": EvaluationFigures,
    "InterruptCheckpoint": InterruptCheckpoint,
    "LabelIssues": LabelIssues,
    "PrototypeDiagnostics": PrototypeDiagnostics,
    "AttentionalWeightFigures": AttentionalWeightFigures,
}


def register_default_callback(name: str, factory: Callable[[], Callback]) -> None:
    """Make ``factory`` (a callback class or a function of no arguments) available under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected argument `name` to be a non-empty string, but got {name!r}")
    if name in DEFAULT_CALLBACKS and DEFAULT_CALLBACKS[name] is not factory:
        raise ValueError(f"Expected a new callback name, but {name!r} is already registered to {DEFAULT_CALLBACKS[name]!r}")
    DEFAULT_CALLBACKS[name] = factory


def build_default_callbacks(names: Iterable[str]) -> list[Callback]:
    """Fresh instances of the named callbacks, in order."""
    unknown = [name for name in names if name not in DEFAULT_CALLBACKS]
    if unknown:
        raise ValueError(f"Expected default callback names among {sorted(DEFAULT_CALLBACKS)}, but got unknown {unknown}")
    return [DEFAULT_CALLBACKS[name]() for name in names]
