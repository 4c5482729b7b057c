"""The generator's bin grid, defined once: a feature encoded in [0, 1] is modelled over `n_bins` bins whose
centres are evenly spaced from 0 to 1, both included (so the extremes of every feature, and both codes of a
binary categorical, are exactly representable; the paper's grid stops one bin short of 1).

The grid comes in two precisions because both are part of what a seed reproduces: the generator's training
targets use torch's float32 `linspace` (it is stored in every checkpoint), while the sampler's decoding
tables are built from numpy's float64 one. The two differ in the last float32 bit for most `n_bins`.
"""
from __future__ import annotations

import numpy as np
import torch


def centres(n_bins: int) -> np.ndarray:
    """(n_bins,) float64 bin centres 0, 1 / (n_bins - 1), ..., 1 (the sampler's tables)."""
    return np.linspace(0.0, 1.0, n_bins)


def centres_tensor(n_bins: int) -> torch.Tensor:
    """(n_bins,) float32 bin centres as the generator trains on them."""
    return torch.linspace(0.0, 1.0, n_bins)


def half_width(n_bins: int) -> float:
    """Half the distance between neighbouring centres: a value within it of a centre lies in that bin."""
    return 0.5 / (n_bins - 1)


def nearest(x, n_bins: int):
    """The bin each encoded value falls in (rounded half to even): a long tensor for a tensor, else an
    int array."""
    if isinstance(x, torch.Tensor):
        return torch.round(x * (n_bins - 1)).long()
    return np.rint(np.asarray(x) * (n_bins - 1)).astype(int)
