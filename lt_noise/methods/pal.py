"""PAL and FNPAL: prototype-anchored learning (Zhou et al., ICML 2022; ``papers/000`` and its slides).

The classifier's prototypes ``w_1..w_k`` are fixed at the optimum of Lemma 3.1, unit vectors with
``w_i . w_j = -1/(k-1)`` (:mod:`lt_noise.prototypes`), held by the :class:`~lt_noise.models.AnchoredHead`
as a buffer: never a parameter, never in the optimizer, saved in checkpoints. Training only aligns the
features to them ("the classification problem is transformed to a feature alignment problem", Sec. 3.3).

* :class:`PAL` (Sections 3.3, 4.1): logits ``W^T z`` with unnormalised features ``z``, the setting of
  Theorem 4.2 (softmax loss, ``||z|| <= B`` through weight decay and batch norm). The paper's rows for
  long-tailed data (Tables 1, 2, 8) and "CE+PAL" on mini-WebVision (Table 5).
* :class:`FNPAL` (Section 4.2, Proposition 4.5): logits ``s W^T z/||z||``, feature-normalised. The
  scale ``s`` trades fitting ability for robustness (Fig. 4); the paper's choice is noise-aware,
  ``s = 0.25 / (0.05 + η)`` (η the datamodule's nominal noise rate, which the CLI links into
  ``noise_rate``) for CE and SCE, and ``s = 10`` for the active-passive losses (Section 5.2,
  "Baselines"); ``scale: auto``, the default, applies that rule by loss. The noisy-label rows of Tables 3-5 and 9-11.

Both work with any loss of :mod:`lt_noise.losses` (NSL, eq. 6, is ``loss: nsl``: symmetric exactly
because the anchored prototypes sum to zero, Proposition 4.3), with DRW
(:class:`lt_noise.callbacks.DeferredReweighting` in the trainer's callbacks), with mixup
(``mixup_alpha``, :class:`~lt_noise.methods.mixup.MixupClassifier`) and as the first stage of two-stage
training (classifier re-training: a :class:`~lt_noise.methods.Classifier` with ``init_from`` the PAL
checkpoint, ``init_parts: backbone``, ``freeze: backbone`` and the datamodule's ``sampling:
class_balanced``; or :class:`~lt_noise.methods.MiSLAS`).

LDAM (Cao et al. 2019) is defined on cosine logits: its margin is subtracted from the cosine of
normalised features and prototypes, then everything is scaled by its ``s`` (eq. 2 of the PAL paper with
``z, w_j`` on the sphere and ``α_y = -s m_y``; the LDAM-DRW code's ``NormedLinear`` + ``LDAMLoss``).
"LDAM+PAL" (Tables 2 and 8) keeps that loss and replaces the learned normalised prototypes by anchored
ones. So, with an LDAM loss, PAL's head normalises the features and leaves the scale to LDAM's ``s``;
FNPAL with LDAM requires ``scale: 1`` (another scale would multiply LDAM's ``s`` and shrink its margins
by the same factor).

Prototype generation (the head's ``method``): ``"auto"`` uses the exact closed-form simplex when
``k <= d + 1`` and the paper's numerical procedure (Table 7) otherwise, e.g. CIFAR-100 on ResNet-32
(``k = 100 > d + 1 = 65``); for ``k <= d + 1`` both give the same optimum (Theorem 3.2), the closed form
exactly and instantly. ``prototypes_seed`` orients the simplex (seeded, uniformly random; the paper's
procedure starts from a random initialisation too) or seeds the numerical procedure. ``prototypes_path``
loads a file written by :func:`lt_noise.prototypes.save_prototypes` instead (its shape is checked).

ReLU features: Lemma 3.1's margin ``1 + 1/(k-1)`` assumes features anywhere on the sphere, but a ReLU
backbone's features are non-negative, and against a simplex of mixed-sign vertices they reach less:
0.67-0.84 (mean 0.75) for k = 10, d = 128 (cnn4), where the learned cosine head of an LDAM-DRW run reaches
0.78-1.02 and ``prototypes_nonnegative: true`` (Table 7's ``use_relu``) 1.05 for every class
(``python tools/prototype_margins.py``; :func:`lt_noise.prototypes.nonnegative_margins`). The paper does
not say which variant its tables use; the default stays the exact simplex, which also trained better on
Fashion-MNIST-LT with LDAM-DRW (88.5 / 89.1% on seeds 0 / 1 against 79.8% with the ReLU prototypes on seed 0,
docs/results/fmnist-longtail.md).
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from lt_noise.losses import LDAM, ActivePassive
from lt_noise.methods.mixup import MixupClassifier
from lt_noise.prototypes import PAPER_STEPS
from lt_noise.validation import check_choice, check_interval, check_positive

__all__ = ["AUTO", "FNPAL", "NOISE_AWARE", "PAL", "noise_aware_scale"]

#: The ``scale`` option of FNPAL that sets ``s = 0.25 / (0.05 + η)`` from the linked noise rate.
NOISE_AWARE = "noise_aware"
#: The default ``scale`` of FNPAL: the paper's rule, by loss (see :class:`FNPAL`).
AUTO = "auto"
# Section 5.2: "s = 10 for APL losses" (the normalised active + passive combinations).
APL_SCALE = 10.0
# Section 5.2: "we utilize the noise-aware way, i.e., s = 0.25 / (0.05 + η)": numerator and the ε that
# keeps s finite (s = 5) on clean data; s = O(1/(η + ε)) makes the risk bound of eq. (7) noise-independent.
NOISE_AWARE_NUMERATOR = 0.25
NOISE_AWARE_EPSILON = 0.05


def noise_aware_scale(noise_rate: float) -> float:
    """FNPAL's noise-aware scale ``s = 0.25 / (0.05 + η)`` (PAL paper, Section 5.2), for ``η`` in [0, 1)."""
    noise_rate = check_interval("noise_rate", noise_rate, 0.0, 1.0, low_closed=True)
    return NOISE_AWARE_NUMERATOR / (NOISE_AWARE_EPSILON + noise_rate)


def _is_ldam(loss: Any) -> bool:
    return loss == "ldam" or isinstance(loss, LDAM)


class PAL(MixupClassifier):
    """Prototype-anchored learning with unnormalised features (see the module docstring).

    Every argument of :class:`~lt_noise.methods.Classifier` and ``mixup_alpha`` of
    :class:`~lt_noise.methods.mixup.MixupClassifier` are accepted (keyword-only) and passed on; the head
    is the anchored head, set by these arguments (``head_args`` must stay empty):

    Args:
        head: ``"anchored"`` (the only choice; here so that configs and the CLI show it).
        prototypes_path: load the prototypes from this file (shape ``(num_classes, feature_dim)``).
        prototypes_method: ``"auto"``, ``"closed_form"`` (ValueError for ``k > d + 1``) or
            ``"optimized"`` (the paper's Table 7 procedure).
        prototypes_seed: orientation (closed form) or initialisation (numerical); ``None`` = canonical
            closed form / the global RNG.
        prototypes_nonnegative: the numerical procedure's ReLU-on-features variant (Table 7 ``use_relu``).
        prototypes_steps: steps of the numerical procedure (paper: 100,000).

    Attributes:
        prototypes: the anchored ``(num_classes, feature_dim)`` prototypes (the head's buffer).
    """

    # tools/bench_step.py: PAL's own step (anchored head), without the optional mixup of the parent class.
    BENCHMARK_KWARGS: dict = {}
    # The prototype diagnostics of the paper (Fig. 3, 5b) in every run.
    DEFAULT_CALLBACKS = MixupClassifier.DEFAULT_CALLBACKS + ("PrototypeDiagnostics",)

    def __init__(
        self,
        *,
        head: Literal["anchored"] = "anchored",
        prototypes_path: str | None = None,
        prototypes_method: Literal["auto", "closed_form", "optimized"] = "auto",
        prototypes_seed: int | None = 0,
        prototypes_nonnegative: bool = False,
        prototypes_steps: int = PAPER_STEPS,
        **kwargs: Any,
    ) -> None:
        if head != "anchored":
            raise ValueError(
                f"Expected `head` 'anchored' for {type(self).__name__} (its classifier is the anchored prototypes), "
                f"but got {head!r}; use lt_noise.methods.Classifier for a learned head"
            )
        head_args = kwargs.pop("head_args", None)
        if head_args:
            raise ValueError(
                f"Expected no `head_args` for {type(self).__name__} (the anchored head is set by its prototypes_* "
                f"arguments{' and scale' if isinstance(self, FNPAL) else ''}), but got {head_args}"
            )
        anchored = dict(
            normalize=self._normalizes_features(kwargs.get("loss", "ce")),
            scale=1.0,
            method=prototypes_method,
            nonnegative=prototypes_nonnegative,
            seed=prototypes_seed,
            steps=prototypes_steps,
            prototypes_path=prototypes_path,
        )
        super().__init__(head="anchored", head_args=anchored, **kwargs)
        # The head is rebuilt from this class's own arguments: keep `head_args` out of the saved
        # hyperparameters, which load_from_checkpoint passes back to __init__.
        self.hparams["head_args"] = None

    def _normalizes_features(self, loss: Any) -> bool:
        """Whether the anchored head normalises the features: only for LDAM's cosine logits (module docstring)."""
        return _is_ldam(loss)

    @property
    def prototypes(self) -> Tensor:
        return self.net.head.prototypes



class FNPAL(PAL):
    """Feature-normalised prototype-anchored learning: logits ``s W^T z / ||z||`` (module docstring).

    Every argument of :class:`PAL` is accepted (keyword-only) and passed on; these are FNPAL's own:

    Args:
        scale: ``s > 0``; ``"auto"`` (default): the paper's rule (Section 5.2, "Baselines"), ``s = 10``
            for an active-passive loss (NCE+MAE, NCE+RCE, NFL+RCE, ...: any
            :class:`~lt_noise.losses.ActivePassive`), 1 for LDAM (whose own ``s`` scales the cosine
            logits), and the noise-aware ``s = 0.25 / (0.05 + noise_rate)`` for every other loss (the
            paper's choice for CE and SCE; FL, GCE, NSL: the paper does not say, noise-aware here);
            ``"noise_aware"``: the noise-aware ``s`` whatever the loss. An explicit number always wins.
            Must be 1 with an LDAM loss.
        noise_rate: the nominal label-noise rate η in [0, 1), linked from the datamodule by the CLI.
            Required by the noise-aware scale; for data with real, unknown noise (mini-WebVision, whose
            datamodule reports 0) give ``scale`` a number instead.

    Attributes:
        scale: the resolved ``s``.
    """

    def __init__(
        self,
        *,
        scale: float | Literal["auto", "noise_aware"] = AUTO,
        noise_rate: float | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(scale, str):
            check_choice("scale", scale, (AUTO, NOISE_AWARE))
        else:
            check_positive("scale", scale)
        # The anchored head is built with scale 1 and gets the resolved s below: the rule depends on the
        # loss module, which the parent constructor builds.
        super().__init__(noise_rate=0.0 if noise_rate is None else noise_rate, **kwargs)
        self.scale = self._resolve_scale(scale, noise_rate)
        self.net.head.scale = self.scale

    def _resolve_scale(self, scale: float | str, noise_rate: float | None) -> float:
        ldam = _is_ldam(self.loss_fn)
        if scale == AUTO and (ldam or isinstance(self.loss_fn, ActivePassive)):
            return 1.0 if ldam else APL_SCALE
        if scale in (AUTO, NOISE_AWARE):
            if noise_rate is None:
                raise ValueError(
                    "Expected a `noise_rate` for FNPAL's noise-aware scale (s = 0.25 / (0.05 + noise_rate)): the "
                    "CLI links it from the datamodule; pass noise_rate=... or a numeric `scale`, but got noise_rate=None"
                )
            resolved = noise_aware_scale(noise_rate)
        else:
            resolved = float(scale)
        if ldam and resolved != 1.0:
            raise ValueError(
                f"Expected `scale` 1 for FNPAL with the LDAM loss (LDAM subtracts its margins from the cosine logits "
                f"and then applies its own `s`; another scale would multiply that s and shrink the margins), but got "
                f"scale={scale!r} (s = {resolved:g}); set LDAM's `s` in loss_args instead"
            )
        return resolved

    def _normalizes_features(self, loss: Any) -> bool:
        return True
