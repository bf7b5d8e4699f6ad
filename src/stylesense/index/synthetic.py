"""Synthetic embedding-like vectors for tests and benchmarks of every backend."""

from __future__ import annotations

import numpy as np


def clustered_unit_vectors(
    n: int,
    dim: int,
    *,
    n_clusters: int = 1000,
    latent: int = 256,
    power: float = 0.5,
    spread: float = 0.7,
    noise: float = 0.7,
    seed: int = 0,
) -> np.ndarray:
    """Synthetic embedding-like data: (n, dim) float32, L2-normalised, for tests and benchmarks.

    Gaussian clusters in a ``latent``-dim subspace with a power-law spectrum (image embeddings
    concentrate their variance in few directions, which is what ANN structures and PCA exploit),
    embedded in ``dim`` dims, plus isotropic noise (``noise`` ~ its norm relative to the signal).
    Uniform random vectors would be the wrong test: in high dimension all their neighbours are
    equidistant, so no index beats brute force and recall is meaningless.
    """
    rng = np.random.default_rng(seed)
    latent = min(latent, dim)
    scale = (np.arange(1, latent + 1) ** -power).astype(np.float32)
    centres = rng.standard_normal((n_clusters, latent), dtype=np.float32) * scale
    basis, _ = np.linalg.qr(rng.standard_normal((dim, latent)).astype(np.float32))
    z = centres[rng.integers(0, n_clusters, n)]
    z += spread * rng.standard_normal((n, latent), dtype=np.float32) * scale
    x = z @ basis.T
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x += noise / np.sqrt(dim) * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x
