"""Every public name of DESIGN.md §2 imports from where it did, and so do the names that moved in the
restructuring (the old locations re-export them)."""

from __future__ import annotations

import importlib

import pytest

DESIGN_NAMES = {
    "lt_noise.losses": ["CrossEntropy", "FocalLoss", "MAE", "RCE", "NCE", "NFL", "GCE", "SCE", "AGCE", "AUL", "AEL",
                        "TCE", "MSE", "NSL", "ActivePassive", "LDAM", "BalancedSoftmax", "LogitAdjusted",
                        "class_balanced_weights"],
    "lt_noise.losses.curriculum": ["soft_margin", "expected_initial_margin", "Reweighted"],
    "lt_noise.data.noise": ["symmetric_noise", "uniform_noise", "asymmetric_noise", "class_frequency_noise",
                            "FLIP_MAPS", "cifar100_superclass_flip_map"],
    "lt_noise.data.imbalance": ["long_tailed_counts", "step_counts", "subsample_indices"],
    "lt_noise.data.sampling": ["loss_rank_bins", "hierarchical_meta_split"],
    "lt_noise.prototypes": ["simplex_prototypes", "optimized_prototypes", "generate_prototypes"],
    "lt_noise.weighting": ["AttentionalWeights"],
    "lt_noise.methods": ["Classifier", "PAL", "FNPAL", "ABSGD", "Curriculum", "DynamicLoss"],
    "lt_noise.data.modules": ["FashionMNISTDataModule", "MNISTDataModule", "CIFAR10DataModule", "CIFAR100DataModule",
                              "Animal10NDataModule", "ImageNetLTDataModule", "PlacesLTDataModule",
                              "INaturalist2018DataModule", "MiniWebVisionDataModule", "Clothing1MDataModule",
                              "ImageListDataModule"],
}
# Names whose code moved: (old location, name, new home).
MOVED = [
    ("lt_noise.data.datasets", "sample_seed", "lt_noise.seeding"),
    ("lt_noise.data.modules.base", "global_seed", "lt_noise.seeding"),
    ("lt_noise.data.loaders", "world", "lt_noise.distributed"),
    ("lt_noise.methods.absgd", "ABAdamEq9", "lt_noise.optim"),
    ("lt_noise.methods.classifier", "FREEZE_OPTIONS", "lt_noise.models.parts"),
    ("lt_noise.methods.dynamic_loss", "EpochSplit", "lt_noise.data.sampling"),
    ("lt_noise.methods.dynamic_loss", "split_digest", "lt_noise.data.sampling"),
    ("lt_noise.methods.dynamic_loss", "sgd_virtual_update", "lt_noise.methods.dynamic_loss.functional"),
    ("lt_noise.methods.dynamic_loss", "gumbel_max_labels", "lt_noise.methods.dynamic_loss.functional"),
    ("lt_noise.methods.dynamic_loss", "corrector_pretraining_loss", "lt_noise.methods.dynamic_loss.functional"),
    ("lt_noise.methods.dynamic_loss", "DynamicLoss", "lt_noise.methods.dynamic_loss.method"),
    ("lt_noise.methods.dynamic_loss", "PHASES", "lt_noise.methods.dynamic_loss.plan"),
]


@pytest.mark.parametrize(("module", "names"), DESIGN_NAMES.items())
def test_design_names_import_from_their_documented_module(module, names):
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, f"{module} lacks {missing}"


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_moved_names_still_import_from_their_old_location(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_every_callback_of_the_configs_imports_from_lt_noise_callbacks():
    callbacks = importlib.import_module("lt_noise.callbacks")
    for name in ("ABSGDStages", "AttentionalWeightFigures", "CurriculumDiagnostics", "DeferredReweighting",
                 "DynamicLossDiagnostics", "EvaluationFigures", "InterruptCheckpoint", "PrototypeDiagnostics",
                 "ResultsWriter"):
        assert hasattr(callbacks, name), name
