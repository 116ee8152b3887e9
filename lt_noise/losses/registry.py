"""Named loss factories (timm style): configs give a name and hyperparameters, ``build_loss`` builds.

A factory is a class or a function whose parameters are the loss's hyperparameters, all with
defaults except, possibly, ``class_counts``. ``build_loss`` hands a factory ``num_classes`` and
``class_counts`` only when its signature names them, so a method can always pass both; every other
keyword must be one of the factory's hyperparameters, and a misspelt one is an error that lists the
valid names (nothing is swallowed).

Built-in names, registered where the losses are defined (defaults are the papers' settings; see
each class):

=================  ===============================================================================
name               hyperparameters (defaults)
=================  ===============================================================================
ce                 label_smoothing=0.0
focal              gamma=0.5, detach_focal_factor=False
mse                (none)
mae                (none)
rce                A=-4.0
nce                (none)
nfl                gamma=0.5, detach_focal_factor=False
gce                q=0.7
ngce               q=0.1
sce                alpha=0.1, beta=1.0, A=-4.0
agce               a=0.6, q=0.6
aul                a=5.5, q=3.0
ael                a=2.5
tce                order=2
nsl                (none)
nce+mae            alpha=1.0, beta=1.0                     alpha*NCE + beta*MAE
nce+rce            alpha=1.0, beta=1.0, A=-4.0             alpha*NCE + beta*RCE(A)
nfl+rce            alpha=1.0, beta=1.0, gamma=0.5, A=-4.0, detach_focal_factor=False: alpha*NFL(gamma) + beta*RCE(A)
nce+agce           alpha=1.0, beta=4.0, a=6.0, q=1.5       alpha*NCE + beta*AGCE(a, q)
nce+aul            alpha=1.0, beta=4.0, a=6.3, q=1.5       alpha*NCE + beta*AUL(a, q)
nce+ael            alpha=1.0, beta=4.0, a=5.0              alpha*NCE + beta*AEL(a)
ngce+mae           alpha=1.0, beta=1.0, q=0.1              alpha*NGCE(q) + beta*MAE
ngce+rce           alpha=1.0, beta=1.0, q=0.1, A=-4.0      alpha*NGCE(q) + beta*RCE(A)
ldam               class_counts (required), max_m=0.5, s=30.0
balanced_softmax   class_counts (required)
logit_adjusted     class_counts (required), tau=1.0
=================  ===============================================================================

In the combinations, ``alpha`` scales the active and ``beta`` the passive term (Ma et al. 2020), and
each component's hyperparameters pass through under the component's own name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from torch import Tensor, nn

from lt_noise.validation import check_class_counts, check_factory, check_hyperparameters, check_positive_int

__all__ = ["LOSSES", "available_losses", "build_loss", "loss_hyperparameters", "register_loss"]

Factory = Callable[..., nn.Module]
FactoryT = TypeVar("FactoryT", bound=Factory)

LOSSES: dict[str, Factory] = {}
"""Registered name -> factory (a loss class or a function returning a loss module)."""

# Facts about the data that ``build_loss`` forwards only to factories whose signature names them.
_DATA_ARGUMENTS = ("num_classes", "class_counts")


def _hyperparameters(name: str, factory: Factory) -> dict[str, inspect.Parameter]:
    """The factory's hyperparameters (its parameters other than the data arguments)."""
    return check_factory("loss", name, factory, _DATA_ARGUMENTS)


def register_loss(name: str, factory: FactoryT | None = None) -> FactoryT | Callable[[FactoryT], FactoryT]:
    """Register ``factory`` under ``name``; use as ``@register_loss("gce")`` or ``register_loss("gce", GCE)``.

    Raises ``ValueError`` for an empty or already registered name and for a factory whose
    hyperparameters cannot be checked (``*args``/``**kwargs``) or lack defaults.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected argument `name` to be a non-empty string, but got {name!r}")

    def decorator(fn: FactoryT) -> FactoryT:
        if name in LOSSES:
            raise ValueError(f"Expected a new loss name, but '{name}' is already registered to {LOSSES[name]!r}")
        _hyperparameters(name, fn)
        LOSSES[name] = fn
        return fn

    return decorator if factory is None else decorator(factory)


def available_losses() -> list[str]:
    """The registered loss names, sorted."""
    return sorted(LOSSES)


def _factory(name: str) -> Factory:
    if name not in LOSSES:
        raise ValueError(f"Expected a registered loss name, one of {available_losses()}, but got {name!r}")
    return LOSSES[name]


def loss_hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters of loss ``name`` with their defaults (data arguments excluded)."""
    return {key: p.default for key, p in _hyperparameters(name, _factory(name)).items()}


def build_loss(
    name: str,
    *,
    num_classes: int | None = None,
    class_counts: Sequence[int] | np.ndarray | Tensor | None = None,
    **hparams: Any,
) -> nn.Module:
    """Build the loss registered as ``name`` with hyperparameters ``hparams``.

    ``num_classes`` and ``class_counts`` (observed training samples per class) are passed on only to
    factories that take them; when both are given their lengths must agree. Unknown names, unknown
    hyperparameters and a missing ``class_counts`` for a loss that needs it raise ``ValueError``.
    """
    factory = _factory(name)
    check_hyperparameters("loss", name, _hyperparameters(name, factory), hparams)
    if num_classes is not None:
        num_classes = check_positive_int("num_classes", num_classes)
    if class_counts is not None:
        class_counts = check_class_counts(class_counts, num_classes=num_classes)
    params = inspect.signature(factory).parameters
    data = {"num_classes": num_classes, "class_counts": class_counts}
    for key in _DATA_ARGUMENTS:
        if key not in params:
            continue
        if data[key] is not None:
            hparams[key] = data[key]
        elif params[key].default is params[key].empty:
            raise ValueError(
                f"Loss '{name}' needs `{key}` (the training set's "
                f"{'number of samples per class' if key == 'class_counts' else 'number of classes'}), but got None"
            )
    return factory(**hparams)
