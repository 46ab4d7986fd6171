"""Synthetic LR range-test sweeps for the batch benchmarks.

`make_sweeps` builds N ragged sweeps in the flat layout that `lrfind.analyze_batch` takes:
float buffers `lrs` and `losses` and Arrow-style int64 `offsets` (length N+1, starting at 0),
sweep i being `lrs[offsets[i]:offsets[i+1]]`. The curves are computed vectorised over chunks
of whole sweeps, so 100,000 sweeps (8M points) take about a second.

Every sweep has a length uniform in [min_points, max_points] and exponentially spaced LRs
(strictly increasing) from 1e-7..1e-5 to 1..10, both ends drawn per sweep. The loss, as a
function of x = log10(lr), is a plateau at an initial loss (ln 10 ~ 2.3 for half the sweeps,
log-uniform in [0.3, 7] otherwise), a smoothstep descent from a random LR to a minimum 2x-20x
lower, then an exponential explosion that usually passes 10x the best loss before the range
ends; multiplicative log-normal noise (0.5%-3% per sweep) rides on top. The mix:

======================  =====  =========================================================
kind                    share  what differs from the normal curve
======================  =====  =========================================================
normal                  63%    nothing
flat                    10%    no descent, no explosion: a model that does not learn
never diverges          10%    the range ends at 1e-3..3e-2, before the explosion starts
NaN tail                 5%    NaN from some point into the explosion on (maybe past the end)
+inf tail                5%    +inf from some point into the explosion on (maybe past the end)
immediate explosion      3%    no descent; the loss passes 10x within the first few points
negative losses          4%    the curve is shifted down so that its minimum is below 0
======================  =====  =========================================================
"""

from itertools import pairwise

import numpy as np

# Sweep kinds and their shares (see the module docstring).
NORMAL, FLAT, NEVER_DIVERGES, NAN_TAIL, INF_TAIL, IMMEDIATE, NEGATIVE = range(7)
KIND_SHARES = np.array([0.63, 0.10, 0.10, 0.05, 0.05, 0.03, 0.04])

# exp(60) ~ 1e26: keeps exploded losses finite even in float32, so +inf appears only on purpose.
_MAX_EXPONENT = 60.0
# Curves are computed a chunk of whole sweeps at a time: ~64K-point temporaries stay in the
# CPU caches, where 8M-point ones would cost a fresh page fault every 4 KiB.
_CHUNK_POINTS = 1 << 16


def make_sweeps(n_sweeps, *, min_points=60, max_points=100, seed=0, dtype=np.float64):
    """Build `n_sweeps` synthetic LR range-test sweeps.

    Returns `(lrs, losses, offsets)`: two flat `dtype` buffers and the int64 offsets (length
    `n_sweeps + 1`). The same arguments always give the same data.
    """
    if not 1 <= min_points <= max_points:
        raise ValueError(f"need 1 <= min_points <= max_points, got {min_points}, {max_points}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_points, max_points + 1, size=n_sweeps)
    offsets = np.zeros(n_sweeps + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    params = _sweep_params(rng, rng.choice(KIND_SHARES.size, size=n_sweeps, p=KIND_SHARES))

    total = int(offsets[-1])
    lrs = np.empty(total, dtype=dtype)
    losses = np.empty(total, dtype=dtype)
    targets = np.arange(_CHUNK_POINTS, total, _CHUNK_POINTS)
    bounds = np.unique(np.concatenate(([0], np.searchsorted(offsets, targets), [n_sweeps]))).tolist()
    for a, b in pairwise(bounds):
        lo, hi = offsets[a], offsets[b]
        chunk = {name: values[a:b] for name, values in params.items()}
        lrs[lo:hi], losses[lo:hi] = _curves(chunk, lengths[a:b], rng)
    return lrs, losses, offsets


def _sweep_params(rng, kind):
    """Per-sweep curve parameters; positions are in decades of LR (x = log10 lr)."""
    n = kind.size
    lo = rng.uniform(-7.0, -5.0, n)
    hi = np.where(kind == NEVER_DIVERGES, rng.uniform(-3.0, -1.5, n), rng.uniform(0.0, 1.0, n))
    span = hi - lo
    initial = np.where(rng.random(n) < 0.5, np.log(10.0), np.exp(rng.uniform(np.log(0.3), np.log(7.0), n)))
    best = initial * rng.uniform(0.05, 0.5, n)
    descent_start = lo + span * rng.uniform(0.1, 0.4, n)
    descent_width = span * rng.uniform(0.15, 0.3, n)
    explosion = descent_start + descent_width + span * rng.uniform(0.02, 0.12, n)
    rate = rng.uniform(3.0, 12.0, n)  # e-folds of loss per decade of LR once exploding
    tail = rng.uniform(2.0, 6.0, n)  # e-folds into the explosion where a NaN/inf tail begins
    sigma = rng.uniform(0.005, 0.03, n)
    shift = np.where(kind == NEGATIVE, best * rng.uniform(1.5, 3.0, n), 0.0)

    flat = kind == FLAT
    descent_start[flat] = np.inf
    explosion[flat | (kind == NEVER_DIVERGES)] = np.inf
    immediate = kind == IMMEDIATE
    best[immediate] = initial[immediate]
    descent_start[immediate] = np.inf
    explosion[immediate] = lo[immediate]
    # 15-40 e-folds per decade is 1-3 e-folds per point at ~13 points per decade: 10x in 1-3 points.
    rate[immediate] = rng.uniform(15.0, 40.0, immediate.sum())
    tail_fill = np.select([kind == NAN_TAIL, kind == INF_TAIL], [np.nan, np.inf], 0.0)
    tail[(kind != NAN_TAIL) & (kind != INF_TAIL)] = np.inf
    return {
        "lo": lo,
        "span": span,
        "initial": initial,
        "best": best,
        "descent_start": descent_start,
        "descent_width": descent_width,
        "explosion": explosion,
        "rate": rate,
        "tail": tail,
        "tail_fill": tail_fill,
        "sigma": sigma,
        "shift": shift,
    }


def _curves(params, lengths, rng):
    """Flat float64 (lrs, losses) of consecutive sweeps with the given parameters."""
    p = {name: np.repeat(values, lengths) for name, values in params.items()}
    first = np.cumsum(lengths) - lengths
    pos = np.arange(lengths.sum()) - np.repeat(first, lengths)
    x = p["lo"] + p["span"] * (pos / np.repeat(np.maximum(lengths - 1, 1), lengths))

    u = np.clip((x - p["descent_start"]) / p["descent_width"], 0.0, 1.0)
    drop = u * u * (3.0 - 2.0 * u)  # smoothstep from the plateau to the minimum
    loss = p["best"] + (p["initial"] - p["best"]) * (1.0 - drop)
    # Before the explosion the exponent is negative; clipping at 0 keeps the curve flat there.
    exponent = np.clip(p["rate"] * (x - p["explosion"]), 0.0, _MAX_EXPONENT)
    loss += p["best"] * np.expm1(exponent)
    loss *= np.exp(p["sigma"] * rng.standard_normal(pos.size))
    loss -= p["shift"]
    in_tail = exponent > p["tail"]
    loss[in_tail] = p["tail_fill"][in_tail]
    return 10.0**x, loss
