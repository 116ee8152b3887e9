"""Parts of a :class:`~lt_noise.models.Network` for two-stage training: initial weights and frozen parts.

Second stages start from a first stage's weights (``init_from``: the whole network, or only the backbone
so that the head starts fresh, as in classifier re-training) and may train only part of the network
(``freeze``: the head alone, or the backbone's last block and the head). Methods call these from their
constructor; schedules that freeze mid-run (:class:`lt_noise.callbacks.ABSGDStages`) call
:func:`freeze_parts` at the stage switch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lt_noise.models.network import Network, last_block

__all__ = ["FREEZE_OPTIONS", "INIT_PARTS", "freeze_parts", "load_network_weights"]

#: What ``freeze`` may name: nothing, the whole backbone (only the head trains), or the backbone except
#: its last block ("LB+FC" of ABSGD's stage 2).
FREEZE_OPTIONS = ("none", "backbone", "backbone_except_last_block")
#: What ``init_from`` may load: the whole network, or only the backbone.
INIT_PARTS = ("net", "backbone")


def load_network_weights(network: Network, path: str, *, parts: Literal["net", "backbone"] = "net") -> None:
    """Load the network's weights (``parts="net"``) or the backbone's (``"backbone"``) from ``path``.

    ``path`` is a Lightning checkpoint of an lt-noise method (its ``net.*`` entries are used) or a
    state dict of a :class:`~lt_noise.models.Network`. Shapes must match; a mismatch names the entry.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"Expected a checkpoint to initialise from at {path!r}, but found none") from error
    except Exception as error:  # unpickling errors come in many types
        raise ValueError(f"Could not read checkpoint {path!r} to initialise from: {error}") from error
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"Expected a Lightning checkpoint or a state dict in {path!r}")
    if any(key.startswith("net.") for key in state):
        state = {key[len("net.") :]: value for key, value in state.items() if key.startswith("net.")}
    target: nn.Module = network
    if parts == "backbone":
        state = {key[len("backbone.") :]: v for key, v in state.items() if key.startswith("backbone.")}
        target = network.backbone
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"Checkpoint {path!r} does not match this model's {parts}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (of {len(missing)} and {len(unexpected)})"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(
                f"Checkpoint {path!r} entry {key!r} has shape {tuple(value.shape)}, but this model's has "
                f"{tuple(own[key].shape)} (num_classes or backbone differ?)"
            )
    target.load_state_dict(state)


def freeze_parts(network: Network, what: str) -> list[nn.Module]:
    """Stop training part of ``network`` (``what`` in :data:`FREEZE_OPTIONS`); return the frozen modules.

    The frozen backbone parameters get ``requires_grad=False``; the modules left without a trainable
    parameter are put in eval mode, so that their batch-norm statistics stay fixed too. The caller keeps
    them in eval mode whenever it switches the network back to training mode (``Classifier.train``).
    """
    if what == "none":
        return []
    keep_training = [] if what == "backbone" else list(last_block(network.backbone).parameters())
    kept = {id(p) for p in keep_training}
    for parameter in network.backbone.parameters():
        parameter.requires_grad_(id(parameter) in kept)
    frozen = [
        module
        for module in network.backbone.modules()
        if not any(p.requires_grad for p in module.parameters()) and any(True for _ in module.parameters())
    ]
    for module in frozen:
        module.eval()
    return frozen
