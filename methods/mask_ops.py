"""Small image operations on masks shared by the mask-producing methods, with OpenCV's exact conventions (the
official codes call cv2.GaussianBlur) but without OpenCV: scipy does the filtering."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

# OpenCV's fixed kernels for GaussianBlur with sigma <= 0 and an odd size up to 7 (getGaussianKernel's table);
# the official code calls cv2.GaussianBlur(img, (5, 5), 0), i.e. the binomial [1 4 6 4 1] / 16.
_OPENCV_SMALL_KERNELS = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
}


def opencv_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """The 1-D kernel ``cv2.getGaussianKernel(ksize, sigma)`` uses (float32 images)."""
    if ksize % 2 == 0 or ksize < 1:
        raise ValueError(f"blur_kernel={ksize}: must be odd and positive")
    if sigma <= 0 and ksize in _OPENCV_SMALL_KERNELS:
        return np.asarray(_OPENCV_SMALL_KERNELS[ksize], dtype=np.float64)
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(img: np.ndarray, ksize: int = 5, sigma: float = 0.0) -> np.ndarray:
    """``cv2.GaussianBlur(img, (ksize, ksize), sigma)`` on a float image: separable, borders reflected without
    repeating the edge pixel (OpenCV's BORDER_REFLECT_101 = scipy's ``mirror``)."""
    k = opencv_gaussian_kernel(ksize, sigma)
    out = correlate1d(img.astype(np.float64), k, axis=0, mode="mirror")
    return correlate1d(out, k, axis=1, mode="mirror").astype(np.float32)


def min_max(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant map becomes zeros (the official code would divide by zero)."""
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
