"""A colour descriptor measured from the pixels: what the product's foreground is coloured.

CNN features pooled for "what kind of thing is this" keep little exact colour (a colour head
trained on them found the query's baseColour in under half of its top 10, docs/adapter.md).
Catalogue photos are products on a light studio background, so the colour can be read off the
pixels directly: mask the background, histogram the rest in CIELAB (perceptually even, so bin
distances mean similar colour differences everywhere), and compare histograms by cosine.

Recipe (chosen on the training halves of the shared Kaggle and H&M sets, never their test
halves; the measurements are in docs/adapter.md, "Steered search"):
  1. Downscale so the longer side is at most :data:`SIZE` px (box filter: colour averages,
     not aliasing) and convert sRGB to CIELAB (D65).
  2. Background = pixels within :data:`BACKGROUND_DELTA_E` (CIE76) of the border's median colour,
     when that colour is light (L* > :data:`LIGHT_BACKGROUND_L`); a dark or busy border means
     no studio background and every pixel counts. A product that is all background colour (a
     white shirt on white) leaves under :data:`MIN_FOREGROUND` of the pixels: then all pixels
     count, so it reads as white rather than as its few stitches.
  3. Foreground pixels weigh by a centred Gaussian (sigma :data:`CENTRE_SIGMA` of the half-side):
     the product sits in the middle; a model's hair, shoes and the frame's edges less so.
  4. A joint L*a*b* histogram with linear (soft) assignment between bin centres, so near shades
     (two navies, off-white and cream) share mass instead of falling on either side of a bin edge;
     one for the whole photo and one for each horizontal band (top / bottom half: a shirt vs
     the trousers under it on a model shot), each turned into the square root of its
     frequencies (cosine of two = their Bhattacharyya coefficient) and concatenated.
Pure numpy and Pillow, deterministic, about a millisecond per photo on one thread.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # PIL is imported where a photo is read: the engine imports this module for DIM
    from PIL import Image

VERSION = 1
"""The recipe's version: bump it whenever a change alters the descriptors, so stored ones
(bench/steer.py's cache; later, a home's) are known to be stale."""

SIZE = 48
"""Longest side the photo is reduced to: colour needs no detail. 48 px kept the Kaggle training
half's "same colour, other types" at 0.498 against 0.503 at 64 px, in 0.6 of the time."""

BINS = (6, 7, 7)
"""Bin centres along L*, a*, b* (L* 0..100, a* -60..60, b* -60..70: garment colours lie within)."""
_LOW = np.array([0.0, -60.0, -60.0], dtype=np.float32)
_HIGH = np.array([100.0, 60.0, 70.0], dtype=np.float32)

BANDS = 2
"""Horizontal bands with a histogram of their own, beside the whole photo's."""

BACKGROUND_DELTA_E = 5.0
LIGHT_BACKGROUND_L = 70.0
MIN_FOREGROUND = 0.02
CENTRE_SIGMA = 0.5

DIM = (1 + BANDS) * int(np.prod(BINS))
"""Length of every descriptor (882)."""

# sRGB -> linear light for each 8-bit value, and linear RGB -> XYZ scaled by the D65 white point
_LINEAR = np.where(
    np.arange(256) / 255 <= 0.04045, np.arange(256) / 255 / 12.92, ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4
).astype(np.float32)
_RGB_TO_XYZ = (
    np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    / np.array([0.95047, 1.0, 1.08883])[:, None]
).T.astype(np.float32)
_STRIDES = np.array([BINS[1] * BINS[2], BINS[2], 1])
_N_BINS = int(np.prod(BINS))
# the 8 bin centres around a pixel: offsets from its lower corner (index and which side per axis)
_CORNERS = list(itertools.product((0, 1), repeat=3))
_CORNER_OFFSETS = np.array([np.dot(c, _STRIDES) for c in _CORNERS])


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB pixels, shape (..., 3) float32: L* 0..100, a*, b* around 0."""
    xyz = _LINEAR[rgb] @ _RGB_TO_XYZ
    f = np.where(xyz > np.float32(0.008856), np.cbrt(xyz), np.float32(7.787) * xyz + np.float32(16 / 116))
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def foreground_weights(lab: np.ndarray) -> np.ndarray:
    """Each pixel's weight in the histogram (h, w): 0 on a light studio background, a centred
    Gaussian elsewhere; every pixel counts when the mask leaves (almost) nothing."""
    h, w = lab.shape[:2]
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    background = np.median(border, axis=0)
    if background[0] > LIGHT_BACKGROUND_L:
        distance2 = ((lab - background) ** 2).sum(axis=-1)
        foreground = distance2 > np.float32(BACKGROUND_DELTA_E**2)
        if foreground.mean() < MIN_FOREGROUND:
            foreground[:] = True
    else:
        foreground = np.ones((h, w), dtype=bool)
    def gaussian(n: int) -> np.ndarray:  # along one side, in units of its half-length
        t = (np.arange(n, dtype=np.float32) - (n - 1) / 2) / (n / 2)
        return np.exp(-(t**2) / np.float32(2 * CENTRE_SIGMA**2))

    return foreground * np.outer(gaussian(h), gaussian(w))


def _soft_histogram(lab: np.ndarray, weights: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Per band, the joint L*a*b* histogram of pixels ``lab`` (n, 3) with ``weights`` (n,),
    each pixel's weight spread linearly over the 8 bin centres around it; shape (BANDS, bins)."""
    base = band * _N_BINS
    sides = []  # per axis: (the pixels' (lower, upper) shares)
    for axis in range(3):
        pos = (np.clip(lab[:, axis], _LOW[axis], _HIGH[axis]) - _LOW[axis]) * np.float32(
            (BINS[axis] - 1) / (_HIGH[axis] - _LOW[axis]))
        low = np.minimum(pos.astype(np.intp), BINS[axis] - 2)  # pos >= 0, so truncation is floor
        upper = pos - low
        base += low * _STRIDES[axis]
        sides.append((1 - upper, upper))
    shares = [weights]
    for lower, upper in sides:  # the corners' weights, one axis at a time
        shares = [s * side for s in shares for side in (lower, upper)]
    index = base[None] + _CORNER_OFFSETS[:, None]
    counts = np.bincount(index.ravel(), np.concatenate(shares), minlength=BANDS * _N_BINS)
    return counts.reshape(BANDS, _N_BINS)


def colour_descriptor(image: Image.Image) -> np.ndarray:
    """The photo's colour descriptor: float32, length :data:`DIM`, unit L2 norm; the cosine of
    two is how alike their products' colours are (see the module docstring for the recipe)."""
    img = image if image.mode == "RGB" else image.convert("RGB")
    scale = SIZE / max(img.size)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        from PIL import Image

        img = img.resize(size, Image.Resampling.BOX)
    lab = to_lab(np.asarray(img))
    h, w = lab.shape[:2]
    weights = foreground_weights(lab).ravel()
    band = np.repeat(np.arange(h, dtype=np.intp) * BANDS // h, w)
    per_band = _soft_histogram(lab.reshape(-1, 3), weights, band)
    hist = np.concatenate([per_band.sum(axis=0, keepdims=True), per_band])
    totals = hist.sum(axis=1, keepdims=True)
    hist = np.sqrt(hist / np.where(totals > 0, totals, 1.0))  # each non-empty block: unit norm
    vector = hist.ravel()
    return (vector / np.linalg.norm(vector)).astype(np.float32)
