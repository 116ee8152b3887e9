"""Dynamic Loss: a meta-learned label corrector and margin generator with hierarchical meta-set sampling.

Paper: Jiang et al., "Dynamic Loss For Robust Learning", AAAI 2023 (``papers/002_*``). The classifier
f_ω is trained with the dynamic loss (eq. 2)

    DL = CE(y*, f_ω(x) + q),   y* = g(r|y)·y + (1 - g(r|y))·y'  (eq. 3),   q = G_m(1)  (eq. 5)

whose label corrector g and margin generator q form a meta-net G_θ (:class:`lt_noise.models.MetaNet`),
learned by the bilevel step of eqs. 7-9 on a small class-balanced, low-loss *meta set* that hierarchical
sampling draws afresh every epoch (section "Hierarchical Sampling Strategy", Algorithm 1).

What happens, per epoch ``e`` (0-based) and per step::

    epoch start   rank: eval mode, un-augmented view, per-sample loss vs the observed label over the whole
                  training set; bin r of every sample within its observed class (loss_rank_bins, R bins).
                  e >= warmup_epochs: split = hierarchical_meta_split (or naive_meta_split) seeded by
                  SeedSequence([seed, e]) -> meta set (int(M1·n_min) per class) + training remainder.
    warm-up step  CE on the augmented view (plain ERM) + one Adam step of the label corrector on
                  -log(g + (1-g)·softmax_y(f(x_weak))) (while global_step < corrector_pretrain_iters).
    meta step     (eq. 7) virtual SGD step ω̂(θ) on the un-augmented view with the dynamic loss;
                  (eq. 8) meta loss CE(f_ω̂(x_meta), y_meta), θ <- Adam(∂/∂θ);
                  (eq. 9) real step on the augmented view with y*, q from the updated θ.
    epoch end     one fine-tuning pass over the meta set with CE(f(x) + q.detach(), y) (authors' code).

Every choice where the paper and the authors' code (jiangwenj02/dynamic_loss, read, not copied) differ,
the Table 4 ablations and the ``virtual_params`` default are tabled in ``docs/dynamic_loss.md``.

The package, by responsibility:

- :mod:`.functional`: the pure math (the virtual SGD step of eq. 7, the Gumbel-max y', the corrector's
  warm-up loss);
- :mod:`.ranking`: the per-epoch ranking pass and the split it gives (exact under resume and DDP);
- :mod:`.plan`: the epoch's batch plan (warm-up, meta and fine-tuning batches) and its loader;
- :mod:`.method`: :class:`DynamicLoss`, the LightningModule (the bilevel step, phases, checkpoints).

Its diagnostics (the paper's Fig. 3, 4 and 6) are the callback :class:`lt_noise.callbacks.DynamicLossDiagnostics`
(callbacks read a method through ``pl_module`` and never import it); the epoch's split and its checksum
(:class:`EpochSplit`, :func:`split_digest`) live in :mod:`lt_noise.data.sampling`, which both use.
"""

from lt_noise.methods.dynamic_loss.functional import corrector_pretraining_loss, gumbel_max_labels, sgd_virtual_update
from lt_noise.methods.dynamic_loss.method import CORRECTOR_PRETRAIN_ITERS, META_LR, WARMUP_EPOCHS, DynamicLoss
from lt_noise.methods.dynamic_loss.plan import PHASES, EpochSplit, split_digest

__all__ = [
    "CORRECTOR_PRETRAIN_ITERS",
    "META_LR",
    "PHASES",
    "WARMUP_EPOCHS",
    "DynamicLoss",
    "EpochSplit",
    "corrector_pretraining_loss",
    "gumbel_max_labels",
    "sgd_virtual_update",
    "split_digest",
]
