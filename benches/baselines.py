"""Pure-numpy baselines for `lrfind.analyze_batch`, the bar its Rust core must clear.

All take N ragged sweeps in the flat layout (float64 `lrs` and `losses`, int64 `offsets` of
length N+1; sweep i is `lrs[offsets[i]:offsets[i+1]]`) and run the seed's pipeline on each:

1. Divergence: stop at the first point j whose loss is NaN or +-inf, or (j > 0) exceeds
   `best + 9 * |best|`, best being the minimum loss strictly before j (10x best for a positive
   best). `stop_index` is j, or -1 if the sweep never stops; points 0..j-1 are kept.
2. Suggestion: with k >= 2 kept points, `g = np.gradient(kept_losses, np.log(kept_lrs))`,
   `m = argmin(g)` (first on ties) and the suggestion backs off to `max(0, m - floor(0.1 k))`;
   with k < 2 there is none (index -1, lr NaN).

Each returns `(stop_index, index, lr)`: int64, int64 and float64 arrays of length N.

- `per_sweep_loop`: a Python loop over the sweeps calling numpy, as a user would write it.
- `vectorized`: the same pipeline without a loop over sweeps; the strong baseline. Its
  gradient reproduces numpy's operations in numpy's order, so it is bit-identical to
  `np.gradient` and the argmin (ties included) always agrees with `per_sweep_loop`.
- `floor`: one pass over both buffers, the memory-bandwidth floor; it returns per-sweep sums,
  not the pipeline's outputs.

Inputs are taken as float64 (other float dtypes are converted first). LRs must be positive
and strictly increasing within a sweep, as `np.gradient` on their logs needs.
"""

import math
from itertools import pairwise

import numpy as np

# Block size of `vectorized`, in points: small enough that a block's temporaries stay in the
# CPU caches, large enough that numpy's per-call overhead (~70 calls a block) stays small.
# About 2x faster than one block over 8M points on the development machine.
BLOCK_POINTS = 1 << 15


def _as_buffers(lrs, losses, offsets):
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError("lrs and losses must be 1-D and of the same length")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != lrs.size:
        raise ValueError("offsets must run from 0 to len(lrs)")
    return lrs, losses, offsets


def per_sweep_loop(lrs, losses, offsets):
    """The pipeline, one sweep at a time, with the numpy calls a user would write."""
    lrs, losses, offsets = _as_buffers(lrs, losses, offsets)
    n = offsets.size - 1
    stop_index = np.empty(n, dtype=np.int64)
    index = np.full(n, -1, dtype=np.int64)
    lr = np.full(n, np.nan)
    bounds = offsets.tolist()
    # inf - inf in the threshold after an -inf loss is harmless (that point stops already),
    # as is an overflow to inf for a huge best.
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(n):
            x = lrs[bounds[i] : bounds[i + 1]]
            y = losses[bounds[i] : bounds[i + 1]]
            best = np.minimum.accumulate(y[:-1])
            bad = ~np.isfinite(y)
            bad[1:] |= y[1:] > best + 9 * np.abs(best)
            if bad.any():
                kept = int(bad.argmax())
                stop_index[i] = kept
            else:
                kept = y.size
                stop_index[i] = -1
            if kept >= 2:
                g = np.gradient(y[:kept], np.log(x[:kept]))
                j = max(0, int(g.argmin()) - math.floor(0.1 * kept))
                index[i] = j
                lr[i] = x[j]
    return stop_index, index, lr


def vectorized(lrs, losses, offsets, *, block_points=BLOCK_POINTS):
    """The pipeline over all sweeps at once, in cache-sized blocks of whole sweeps.

    `block_points=None` runs everything as one block. Blocking loops over ~N * mean_length /
    block_points blocks, not over sweeps; a sweep longer than a block gets a block of its own.
    """
    lrs, losses, offsets = _as_buffers(lrs, losses, offsets)
    n = offsets.size - 1
    stop_index = np.empty(n, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    lr = np.empty(n)
    if block_points is None:
        bounds = [0, n]
    else:
        targets = np.arange(block_points, offsets[-1], block_points)
        bounds = np.unique(np.concatenate(([0], np.searchsorted(offsets, targets), [n]))).tolist()
    # Points past a sweep's stop and pairs that straddle two sweeps compute garbage
    # (inf - inf, x / 0) that is never read.
    with np.errstate(all="ignore"):
        for a, b in pairwise(bounds):
            lo, hi = offsets[a], offsets[b]
            _analyze_block(lrs[lo:hi], losses[lo:hi], offsets[a : b + 1] - lo, stop_index[a:b], index[a:b], lr[a:b])
    return stop_index, index, lr


def _analyze_block(lrs, losses, offsets, stop_index, index, lr):
    """`vectorized` on sweeps whose offsets start at 0, writing into the three outputs."""
    starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    kept = _kept_points(losses, starts, ends, lengths)
    stop_index[:] = np.where(kept < lengths, kept, -1)

    has_slope = kept >= 2
    first = starts[has_slope]
    k = kept[has_slope]
    # One spare slot so that reduceat below may start a (gap) range at the very end.
    g = np.empty(losses.size + 1)
    g[:1] = g[-2:] = 0  # unless a kept range overwrites them, read only inside a gap
    _log_gradient(lrs, losses, first, k, g)

    # Suggestion: the minimum of each kept range [first, first + k) by one reduceat over
    # alternating kept ranges and the gaps between them, then its first occurrence.
    index[:] = -1
    lr[:] = np.nan
    if first.size:
        bounds = np.empty(2 * first.size, dtype=np.int64)
        bounds[0::2] = first
        bounds[1::2] = first + k
        lowest = np.full(starts.size, np.nan)  # NaN matches nothing in sweeps without a slope
        lowest[has_slope] = np.minimum.reduceat(g, bounds)[0::2]
        hits = np.flatnonzero(g[:-1] == np.repeat(lowest, lengths))
        steepest = hits[np.searchsorted(hits, first)]
        # floor(0.1 * k) as the seed writes it, not k // 10 (they agree for any sane k).
        suggestion = np.maximum(steepest - first - np.floor(0.1 * k).astype(np.int64), 0)
        index[has_slope] = suggestion
        lr[has_slope] = lrs[first + suggestion]


def _kept_points(losses, starts, ends, lengths):
    """How many leading points of each sweep the divergence rule keeps."""
    total = losses.size
    # Running minimum per sweep in one flat scan: complex numbers compare lexicographically in
    # numpy, and a real part decreasing from sweep to sweep keeps the scan from reaching back
    # into an earlier sweep. fmin skips NaNs, so one NaN does not poison every later sweep.
    z = np.repeat(-np.arange(starts.size, dtype=np.complex128), lengths)
    z.imag = losses
    best = np.fmin.accumulate(z[:-1]).imag  # best[j]: minimum up to point j, for point j + 1
    threshold = np.abs(best)
    threshold *= 9
    threshold += best
    over = losses[1:] > threshold
    first_points = starts[(lengths > 0) & (starts > 0)]
    over[first_points - 1] = False  # a sweep's first point has no best yet
    bad = np.empty(total + 1, dtype=bool)
    np.isfinite(losses, out=bad[:total])
    np.logical_not(bad[:total], out=bad[:total])
    bad[1:total] |= over
    bad[total] = True  # sentinel: every sweep finds a True at or after its start
    hits = np.flatnonzero(bad)
    first_bad = hits[np.searchsorted(hits, starts)]
    return np.minimum(first_bad, ends) - starts


def _log_gradient(lrs, losses, first, k, out):
    """`np.gradient(losses[f:f+k], np.log(lrs[f:f+k]))` into `out[f:f+k]` for every (f, k).

    Needs k >= 2 and ranges that do not overlap; `out` (at least as long as `losses`) holds
    garbage everywhere else. Bit-identical to np.gradient: numpy's non-uniform formula is
    evaluated term by term in numpy's order, up to exact IEEE identities
    (`-(p / q) * f == -(p / q * f)`, `u + -v == u - v`), and numpy's uniform formula replaces
    it where all spacings in a range are exactly equal, as numpy does.
    """
    total = losses.size
    x = np.log(lrs)
    dx = np.diff(x)
    dx1, dx2 = dx[:-1], dx[1:]
    s = dx1 + dx2
    a = dx1 * s
    np.divide(dx2, a, out=a)
    a *= losses[:-2]  # -a * f[i-1] in numpy's notation
    b = dx2 - dx1
    b /= dx1 * dx2
    b *= losses[1:-1]
    b -= a
    s *= dx2
    np.divide(dx1, s, out=s)
    s *= losses[2:]
    np.add(b, s, out=out[1 : total - 1])

    # The first and last points of each range take numpy's one-sided edge formula.
    last = first + k - 1
    out[first] = (losses[first + 1] - losses[first]) / dx[first]
    out[last] = (losses[last] - losses[last - 1]) / dx[last - 1]

    # Equal neighbouring spacings are common (~1 in 4 on the synthetic sweeps), wholly equal
    # ranges rare: probe the first and last pairs, then check the few candidates point by point.
    wide = k >= 3
    cand_first, cand_last = first[wide], last[wide]
    probe = (dx[cand_first] == dx[cand_first + 1]) & (dx[cand_last - 1] == dx[cand_last - 2])
    if probe.any():
        cand_first = cand_first[probe]
        inner = cand_last[probe] - cand_first - 1
        at = _ragged_arange(cand_first + 1, inner)
        step = np.repeat(dx[cand_first], inner)
        uniform = np.repeat(np.logical_and.reduceat(dx[at] == step, np.cumsum(inner) - inner), inner)
        at = at[uniform]
        out[at] = (losses[at + 1] - losses[at - 1]) / (2.0 * step[uniform])


def _ragged_arange(starts, counts):
    """Concatenated `np.arange(s, s + c)` for each (s, c)."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(ends[-1])


def floor(lrs, losses, offsets):
    """Per-sweep sums of `lrs` and of `losses`: one read of each buffer and nothing else.

    The speed bound for any batch analysis of the same data. Needs non-empty sweeps (reduceat
    reads one element for an empty one and fails on an empty last sweep).
    """
    starts = np.asarray(offsets)[:-1]
    return np.add.reduceat(lrs, starts), np.add.reduceat(losses, starts)
