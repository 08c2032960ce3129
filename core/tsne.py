"""A small, seeded t-SNE (van der Maaten & Hinton 2008) in NumPy and SciPy, for the embedding map.

Sparse input affinities from each point's nearest neighbours at a fixed perplexity, and the
repulsion computed on a grid with FFT convolution (the FIt-SNE idea), so 10,000 points lay out in
a minute or so on a 2-core CPU. Deterministic for a given seed: the shipped layouts are reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, sparse

_CHUNK = 512
_MIN_GRID, _MAX_GRID = 32, 640


def _knn_squared(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows of ``x`` and their squared L2 distances."""
    sq = (x * x).sum(axis=1)
    index = np.empty((len(x), k), np.int64)
    dist = np.empty((len(x), k))
    for start in range(0, len(x), _CHUNK):
        rows = np.arange(start, min(start + _CHUNK, len(x)))
        d2 = np.maximum(sq[rows, None] + sq[None, :] - 2.0 * (x[rows] @ x.T), 0.0)
        d2[np.arange(len(rows)), rows] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        part_d2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d2, axis=1, kind="stable")
        index[rows] = np.take_along_axis(part, order, axis=1)
        dist[rows] = np.take_along_axis(part_d2, order, axis=1)
    return index, dist


def _affinities(x: np.ndarray, perplexity: float) -> sparse.coo_matrix:
    """Symmetric t-SNE input affinities P (sum 1) over each point's 3·perplexity neighbours,
    with each row's Gaussian width found by bisection to match the perplexity."""
    k = min(len(x) - 1, max(1, round(3 * perplexity)))
    index, d2 = _knn_squared(x, k)
    d2 = d2 - d2[:, :1]
    beta, low, high = np.ones(len(x)), np.zeros(len(x)), np.full(len(x), np.inf)
    target = np.log(min(perplexity, k))
    for _ in range(64):
        p = np.exp(-d2 * beta[:, None])
        total = p.sum(axis=1)
        entropy = np.log(total) + beta * (d2 * p).sum(axis=1) / total
        wide = entropy > target
        low = np.where(wide, beta, low)
        high = np.where(wide, high, beta)
        beta = np.where(np.isinf(high), beta * 2, (low + high) / 2)
    p = np.exp(-d2 * beta[:, None])
    p /= p.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(len(x)), k)
    matrix = sparse.csr_matrix((p.ravel(), (rows, index.ravel())), shape=(len(x), len(x)))
    matrix = matrix + matrix.T
    return (matrix / matrix.sum()).tocoo()


def _kernels(m: int, h: float) -> tuple[int, np.ndarray]:
    """FFTs of the kernels w = 1 / (1 + r²), w²·dx and w²·dy on a (2m)² grid of spacing h."""
    size = fft.next_fast_len(2 * m, real=True)
    offset = np.fft.fftfreq(size, 1.0 / size) * h
    dx, dy = offset[:, None], offset[None, :]
    k1 = 1.0 / (1.0 + dx * dx + dy * dy)
    k2 = k1 * k1
    kernels = np.stack([k1, k2 * dx, k2 * dy]).astype(np.float32)
    return size, fft.rfft2(kernels)


def _repulsion(y: np.ndarray, spacing: float, cache: dict) -> tuple[float, np.ndarray]:
    """Z = Σ_{i≠j} w_ij and F_i = Σ_j w_ij² (y_i − y_j), w = 1 / (1 + d²), on a grid.

    Points are spread onto a grid of ≤ ``spacing`` cells (cloud-in-cell), convolved with the
    kernels by FFT and read back the same way; each point's own contribution to Z is removed.
    Grid sizes are rounded up to multiples of 16, so ``cache`` reuses the kernels' FFTs.
    """
    low = y.min(axis=0)
    extent = max(float((y.max(axis=0) - low).max()), 1e-12)
    h = min(spacing, extent / (_MIN_GRID - 3))
    m = min(-(-(int(np.ceil(extent / h)) + 3) // 16) * 16, _MAX_GRID)
    h = max(h, extent / (m - 3))
    if (m, h) not in cache:
        if len(cache) > 4:
            cache.clear()
        cache[m, h] = _kernels(m, h)
    size, kernels = cache[m, h]
    u = (y - low) / h + 1.0
    cell = np.floor(u).astype(np.int64)
    fx, fy = u[:, 0] - cell[:, 0], u[:, 1] - cell[:, 1]
    wx, wy = (1 - fx, fx), (1 - fy, fy)
    corners = [
        ((cell[:, 0] + a) * m + cell[:, 1] + b, wx[a] * wy[b]) for a in (0, 1) for b in (0, 1)
    ]
    rho = sum(np.bincount(flat, weight, minlength=m * m) for flat, weight in corners)
    rho_hat = fft.rfft2(rho.reshape(m, m).astype(np.float32), s=(size, size))
    fields = fft.irfft2(rho_hat * kernels, s=(size, size))[:, :m, :m]
    flat_fields = fields.astype(np.float64).reshape(3, -1)
    phi, force_x, force_y = (sum(w * f[flat] for flat, w in corners) for f in flat_fields)
    px = ((1 - fx) ** 2 + fx**2, 2 * fx * (1 - fx))
    py = ((1 - fy) ** 2 + fy**2, 2 * fy * (1 - fy))
    own = sum(px[a] * py[b] / (1.0 + h * h * (a + b)) for a in (0, 1) for b in (0, 1))
    return max(float(phi.sum() - own.sum()), 1e-12), np.stack([force_x, force_y], axis=1)


def tsne(
    x: np.ndarray,
    init: np.ndarray,
    *,
    perplexity: float = 30.0,
    iterations: int = 750,
    exaggerated: int = 250,
    exaggeration: float = 12.0,
    spacing: float = 0.3,
) -> np.ndarray:
    """A 2-D t-SNE layout ``[N, 2]`` of ``x`` [N, K] (van der Maaten 2008), deterministic.

    ``init`` [N, 2] is the starting layout (the caller's PCA projection), scaled to std 1e-4, early exaggeration with momentum 0.5, then momentum
    0.8, adaptive gains and learning rate N / exaggeration (Belkina et al. 2019). No random draw.
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    p = _affinities(x, perplexity)
    rows, cols, vals = p.row.astype(np.int64), p.col.astype(np.int64), p.data
    y = np.asarray(init, np.float64)
    y = y / (y[:, 0].std() or 1.0) * 1e-4
    rate = max(n / exaggeration, 50.0)
    update, gains, cache = np.zeros_like(y), np.ones_like(y), {}
    for step in range(iterations):
        early = step < exaggerated
        dx = y[:, 0][rows] - y[:, 0][cols]
        dy = y[:, 1][rows] - y[:, 1][cols]
        strength = vals / (1.0 + dx * dx + dy * dy)
        attract = np.stack(
            [
                np.bincount(rows, strength * dx, minlength=n),
                np.bincount(rows, strength * dy, minlength=n),
            ],
            1,
        )
        z, repulse = _repulsion(y, spacing, cache)
        grad = 4.0 * ((exaggeration if early else 1.0) * attract - repulse / z)
        gains = np.where(np.sign(grad) != np.sign(update), gains + 0.2, gains * 0.8).clip(0.01)
        update = (0.5 if early else 0.8) * update - rate * gains * grad
        y = y + update
        y -= y.mean(axis=0)
    return y
