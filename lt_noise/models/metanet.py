"""The meta-net of Dynamic Loss: a class-wise label corrector and a per-class margin generator.

Paper: Jiang et al., "Dynamic Loss For Robust Learning" (``papers/002_*``). The dynamic loss (eq. 2) is
``CE(y*, f(x) + q)`` with the corrected label (eq. 3) ``y* = g(r|y) * y + (1 - g(r|y)) * y'`` and the
margin vector (eq. 5) ``q = G_m(1)``; the meta-net ``G = (G_l, G_m)`` is learned by the bilevel step of
eqs. 7-9, which lives in the method (``lt_noise.methods``), not here. These are plain modules plus the
pure functions the method needs.

Where the paper is terse, the architecture and initialisation follow the authors' public code
(jiangwenj02/dynamic_loss, ``mmcls/models/meta_net/dynamic_loss.py``, class ``DynamicLoss``), read, not
copied:

* label corrector: a learned ``(R, 64)`` embedding of the bin index (the code multiplies a one-hot by an
  ``nn.Parameter``, which is an embedding lookup), then ``Linear(64, 64) - ReLU - Linear(64, 64) - ReLU -
  Linear(64, K)`` and a sigmoid, read at the observed class; so g is in effect a learned table
  ``g[r, y]``. The paper says "a one-hot encoder followed by a two-layer perceptron": the code's MLP has
  three linear layers (two hidden ReLU layers of width 64), which we follow. Weights: embedding
  Xavier-uniform, linear weights Xavier-normal, hidden biases 0, final bias 3.98 (sigmoid = 0.982, so
  training starts by trusting the observed labels).
* margin generator: a learned ``(1, 64)`` input vector (Xavier-uniform) through the same three-layer MLP
  to K outputs, final bias 1. The paper's eq. 5 feeds the constant all-ones vector instead; the code's
  learned input is what we follow. With the near-zero Xavier output weights, q starts close to the
  all-ones vector either way.
* ``classwise=False`` is the code's ``LC_classwise=False``: one output shared by all classes (the
  paper's "class-agnostic variant" ablation, 90.56% vs 94.51% on CIFAR-10 asym. 40%).
* ``mode="vector"`` is the paper's Table 4 "V: vector meta net": "we simplify the label corrector and the
  margin generator to a R-length and a C-length learnable vector". The authors' code has no such mode.
  Our vector label corrector learns one logit per table entry, ``(R, K)`` (or ``(R, 1)`` with
  ``classwise=False``, which is the paper's literal "R-length" reading), passed through the same sigmoid
  and initialised to the same 3.98; the vector margin generator learns q directly, initialised to ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_noise.data.sampling import RANK_BINS
from lt_noise.validation import check_choice, check_flag, check_index_tensor, check_positive_int

__all__ = [
    "HIDDEN_DIM",
    "LABEL_CORRECTOR_BIAS",
    "MARGIN_BIAS",
    "MODES",
    "LabelCorrector",
    "MarginGenerator",
    "MetaNet",
    "correct_labels",
    "predicted_labels",
]

# Authors' configs (configs/metadynamic/*.py): h_dim=64 for both meta-net branches.
HIDDEN_DIM = 64
# Authors' init of the label corrector's last bias: sigmoid(3.98) = 0.9817, i.e. start by keeping the
# observed label (g = 1 means "trust the label", eq. 3).
LABEL_CORRECTOR_BIAS = 3.98
# Paper eq. 5 starts q from the all-ones vector; the authors' code sets the last bias to 1 "for preventing
# the meta train invalid". A constant shift of all logits leaves the softmax unchanged.
MARGIN_BIAS = 1.0
# "mlp": the paper's meta-net; "vector": Table 4 "V", directly learned tables.
MODES = ("mlp", "vector")


def _three_layer_mlp(hidden: int, out_features: int, final_bias: float) -> nn.Sequential:
    mlp = nn.Sequential(
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_features)
    )
    for layer in (mlp[0], mlp[2], mlp[4]):
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    nn.init.constant_(mlp[4].bias, final_bias)
    return mlp


# ----------------------------------------------------------------------------------------------------
# Pure functions.


def correct_labels(g: Tensor, labels_onehot: Tensor, y_pred: Tensor) -> Tensor:
    """The corrected label of paper eq. 3: ``y* = g * y + (1 - g) * y_pred``.

    Args:
        g: (B,) label weights g(r|y) in [0, 1] (1 keeps the observed label).
        labels_onehot: (B, K) one-hot observed labels y.
        y_pred: (B, K) the classifier's prediction y' (detached by the caller; see
            :func:`predicted_labels`).

    Returns:
        (B, K) soft targets; each row sums to 1 when ``labels_onehot`` and ``y_pred`` rows do.
    """
    if labels_onehot.ndim != 2:
        raise ValueError(
            f"Expected argument `labels_onehot` of shape (B, K), but got shape {tuple(labels_onehot.shape)}"
        )
    if y_pred.shape != labels_onehot.shape:
        raise ValueError(
            f"Expected argument `y_pred` of shape {tuple(labels_onehot.shape)} (as labels_onehot), "
            f"but got {tuple(y_pred.shape)}"
        )
    if g.shape != labels_onehot.shape[:1]:
        raise ValueError(f"Expected argument `g` of shape ({labels_onehot.shape[0]},), but got {tuple(g.shape)}")
    weight = g.unsqueeze(1)
    return weight * labels_onehot + (1.0 - weight) * y_pred


def predicted_labels(logits: Tensor, *, hard: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """The classifier's prediction y' used in eq. 3, detached from the graph.

    The authors' code uses ``F.gumbel_softmax(logits.detach(), tau=1, hard=True)`` after warm-up and
    ``softmax(logits.detach())`` during the warm-up pre-training of the label corrector. The forward value
    of a hard Gumbel-softmax is a one-hot sample of Categorical(softmax(logits)) for every temperature (tau
    only shapes the straight-through gradient, which is discarded here), so with ``hard=True`` we draw that
    sample directly, from ``generator`` when given, which makes it reproducible.

    Args:
        logits: (B, K) classifier logits (without the margin q).
        hard: one-hot sample (True) or the softmax probabilities (False).
        generator: optional torch.Generator on the logits' device.

    Returns:
        (B, K) tensor in the logits' dtype, no grad.
    """
    if logits.ndim != 2:
        raise ValueError(f"Expected argument `logits` of shape (B, K), but got shape {tuple(logits.shape)}")
    with torch.no_grad():
        probs = logits.detach().float().softmax(dim=1)
        if not hard:
            return probs.to(logits.dtype)
        index = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return F.one_hot(index, logits.shape[1]).to(logits.dtype)


# ----------------------------------------------------------------------------------------------------
# Modules.


class LabelCorrector(nn.Module):
    """Label corrector G_l of paper eq. 3: the weight g(r|y) in [0, 1] of the observed label.

    Args:
        num_classes: number of classes K.
        bins: number of loss-rank bins R (paper Table 7 "Rank Number"; see
            :func:`lt_noise.data.sampling.loss_rank_bins`).
        hidden: width of the bin embedding and the hidden layers (64 in the authors' configs).
        mode: ``"mlp"`` (embedding + three-layer MLP + sigmoid) or ``"vector"`` (a learned table of logits
            + sigmoid; Table 4 "V").
        classwise: one weight per (bin, class) (True, the paper's design) or one per bin shared by all
            classes (False, the class-agnostic ablation).
    """

    def __init__(self, num_classes: int, *, bins: int = RANK_BINS, hidden: int = HIDDEN_DIM, mode: str = "mlp",
                 classwise: bool = True) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_bins = check_positive_int("bins", bins)
        self.hidden = check_positive_int("hidden", hidden)
        self.mode = check_choice("mode", mode, MODES)
        self.classwise = check_flag("classwise", classwise)
        outputs = num_classes if classwise else 1
        if mode == "mlp":
            self.bin_embedding = nn.Embedding(bins, hidden)
            nn.init.xavier_uniform_(self.bin_embedding.weight)
            self.mlp = _three_layer_mlp(hidden, outputs, LABEL_CORRECTOR_BIAS)
        else:
            self.logits = nn.Parameter(torch.full((bins, outputs), LABEL_CORRECTOR_BIAS))

    def table(self) -> Tensor:
        """The full table g[r, y], shape (R, K), differentiable (for the loss and for Fig. 3/7 plots)."""
        if self.mode == "mlp":
            logits = self.mlp(self.bin_embedding.weight)
        else:
            logits = self.logits
        return torch.sigmoid(logits).expand(self.num_bins, self.num_classes)

    def forward(self, bins: Tensor, labels: Tensor) -> Tensor:
        """g(r_i | y_i) for a batch.

        Args:
            bins: (B,) integer loss-rank bins in [0, R).
            labels: (B,) integer observed labels in [0, K).

        Returns:
            (B,) weights in [0, 1].
        """
        bins = check_index_tensor("bins", bins, self.num_bins)
        labels = check_index_tensor("labels", labels, self.num_classes, length=bins.shape[0])
        # The MLP runs on the R bin embeddings once, not on the B samples: same values and gradients.
        return self.table()[bins, labels]

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, bins={self.num_bins}, hidden={self.hidden}, "
                f"mode={self.mode!r}, classwise={self.classwise}")


class MarginGenerator(nn.Module):
    """Margin generator G_m of paper eqs. 5-6: a per-class vector q (K,) added to the logits in training.

    Args:
        num_classes: number of classes K.
        hidden: width of the learned input vector and the hidden layers (64 in the authors' configs).
        mode: ``"mlp"`` (learned input + three-layer MLP, final bias 1) or ``"vector"`` (q learned directly,
            initialised to ones; Table 4 "V").
    """

    def __init__(self, num_classes: int, *, hidden: int = HIDDEN_DIM, mode: str = "mlp") -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.hidden = check_positive_int("hidden", hidden)
        self.mode = check_choice("mode", mode, MODES)
        if mode == "mlp":
            self.input = nn.Parameter(torch.empty(1, hidden))
            nn.init.xavier_uniform_(self.input)
            self.mlp = _three_layer_mlp(hidden, num_classes, MARGIN_BIAS)
        else:
            self.q = nn.Parameter(torch.full((num_classes,), MARGIN_BIAS))

    def forward(self) -> Tensor:
        """The margin vector q, shape (K,)."""
        if self.mode == "mlp":
            return self.mlp(self.input).squeeze(0)
        return self.q

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, hidden={self.hidden}, mode={self.mode!r}"


class MetaNet(nn.Module):
    """The meta-net G = (G_l, G_m) of Dynamic Loss, with the paper's Table 4 switches.

    ``use_corrector=False`` is the "G_m only" ablation (targets are the one-hot observed labels),
    ``use_margin=False`` the "G_l only" one (q = 0); ``mode="vector"`` is "V". At least one branch must be
    on: with neither, the method is plain cross-entropy and has no meta-parameters.

    Args:
        num_classes: number of classes K.
        bins: number of loss-rank bins R.
        hidden: hidden width of both branches.
        mode: ``"mlp"`` or ``"vector"``, for both branches.
        classwise: class-wise (True) or class-agnostic (False) label corrector.
        use_corrector: build the label corrector G_l.
        use_margin: build the margin generator G_m.
    """

    def __init__(self, num_classes: int, *, bins: int = RANK_BINS, hidden: int = HIDDEN_DIM, mode: str = "mlp",
                 classwise: bool = True, use_corrector: bool = True, use_margin: bool = True) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_bins = check_positive_int("bins", bins)
        use_corrector = check_flag("use_corrector", use_corrector)
        use_margin = check_flag("use_margin", use_margin)
        if not (use_corrector or use_margin):
            raise ValueError(
                "Expected at least one of `use_corrector` / `use_margin` to be True, but got both False "
                "(that is plain cross-entropy: use the Classifier method)"
            )
        self.corrector = (
            LabelCorrector(num_classes, bins=bins, hidden=hidden, mode=mode, classwise=classwise)
            if use_corrector else None
        )
        self.margin_generator = MarginGenerator(num_classes, hidden=hidden, mode=mode) if use_margin else None
        # Zero margin / dtype-device reference when a branch is off; follows .to() and is not checkpointed.
        self.register_buffer("_zeros", torch.zeros(num_classes), persistent=False)

    @property
    def use_corrector(self) -> bool:
        return self.corrector is not None

    @property
    def use_margin(self) -> bool:
        return self.margin_generator is not None

    def label_weights(self, bins: Tensor, labels: Tensor) -> Tensor:
        """g(r|y), shape (B,); all ones without the label corrector."""
        if self.corrector is None:
            labels = check_index_tensor("labels", labels, self.num_classes)
            return self._zeros.new_ones(labels.shape[0])
        return self.corrector(bins, labels)

    def margin(self) -> Tensor:
        """q, shape (K,); zeros without the margin generator."""
        if self.margin_generator is None:
            return self._zeros
        return self.margin_generator()

    def corrected_targets(self, bins: Tensor, labels: Tensor, y_pred: Tensor) -> Tensor:
        """y* of eq. 3, shape (B, K), in ``y_pred``'s dtype; the one-hot labels without the corrector."""
        labels = check_index_tensor("labels", labels, self.num_classes)
        onehot = F.one_hot(labels, self.num_classes).to(y_pred.dtype)
        if self.corrector is None:
            if y_pred.shape != onehot.shape:
                raise ValueError(
                    f"Expected argument `y_pred` of shape {tuple(onehot.shape)}, but got {tuple(y_pred.shape)}"
                )
            return onehot
        return correct_labels(self.corrector(bins, labels).to(y_pred.dtype), onehot, y_pred)

    def forward(self, bins: Tensor, labels: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        """``(y*, q)``: the soft targets (B, K) and the margin (K,) of the dynamic loss CE(y*, f(x) + q)."""
        return self.corrected_targets(bins, labels, y_pred), self.margin()
