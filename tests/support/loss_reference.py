"""Reference formulas of the robust losses in plain NumPy, written from the papers (not from lt_noise),
shared by the loss tests."""

from __future__ import annotations

import numpy as np


def np_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def prob_of_label(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """p_y: the softmax probability of each row's label."""
    return np_softmax(x)[np.arange(len(y)), y]


def ref_rce(x, y, A=-4.0):
    # -Σ_i p_i log t_i with log 0 truncated to A and log 1 = 0 (Wang et al. 2019), a slow loop
    p = np_softmax(x)
    out = np.zeros(len(y))
    for n in range(len(y)):
        for i in range(x.shape[1]):
            out[n] -= p[n, i] * (0.0 if i == y[n] else A)
    return out


def ref_nce(x, y):
    log_p = np.log(np_softmax(x))
    return -log_p[np.arange(len(y)), y] / (-log_p).sum(axis=1)


def ref_nfl(x, y, gamma):
    p = np_softmax(x)
    fl = -((1 - p) ** gamma) * np.log(p)
    return fl[np.arange(len(y)), y] / fl.sum(axis=1)


def ref_ngce(x, y, q):
    p = np_softmax(x)
    return (1 - prob_of_label(x, y) ** q) / (x.shape[1] - (p**q).sum(axis=1))
