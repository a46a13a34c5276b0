"""The papers' evaluation protocols as plain functions (used by benchmarks/quality.py).

- PTI's reconstruction table: LPIPS, MSE and identity distance of W, W+ and PTI inversions.
- DragGAN's face landmark manipulation (Table 1): landmarks of one generated face are the
  handles, those of another the targets; after the drag, the mean distance of the result's
  landmarks to the targets is reported (1, 5 and 68 points).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def select_landmarks(n: int, seed: int = 0) -> np.ndarray:
    """Indices of the landmarks to drag: all 68, or `n` drawn without replacement for `seed`."""
    if n == 68:
        return np.arange(68)
    if not 1 <= n <= 68:
        raise ValueError("n must be between 1 and 68")
    return np.sort(np.random.RandomState(seed).choice(68, size=n, replace=False))


def landmark_pairs(handles_lm: np.ndarray, targets_lm: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """[n, 2, 2] (handle, target) pairs from two 68-point sets."""
    idx = select_landmarks(n, seed)
    return np.stack([np.asarray(handles_lm)[idx], np.asarray(targets_lm)[idx]], axis=1).astype(np.float64)


def mean_distance(points: np.ndarray, targets: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding points."""
    p, t = np.asarray(points, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch {p.shape} vs {t.shape}")
    return float(np.linalg.norm(p - t, axis=-1).mean())


def summarize(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4)}
