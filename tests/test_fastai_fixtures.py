"""lrfind's fastai rules against runs recorded from the real fastai 2.8.12 (``tests/fixtures/fastai``).

``tests/fixtures/record_fastai.py`` documents the format and fastai's exact behaviour. Per fixture:

* on the exact window ``Learner.lr_find`` handed to fastai's suggestion functions (float32 values),
  ``suggest(..., skip_start=0, skip_end=0)`` returns fastai's LR and the same point;
* on the whole recording, our default windows (skip 10 at the start, 5 at the end, cut at the first
  NaN) give the same LRs and points, so the window and the NaN cut are fastai's too;
* ``ema(raw, alpha=0.02, debias=True)`` is fastai's ``AvgSmoothLoss``.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import lrfind

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "fastai").glob("*.json"))
FASTAI_METHODS = ("minimum", "steep", "valley", "slide")
REL_TOL = 1e-6  # fastai returns float32 LRs widened to float64


def floats(values):
    """JSON numbers as a float64 array, ``null`` as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def finite_prefix(values):
    """Length of the leading run of finite values."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if bad.size else len(values)


def point_lr(lrs, method, index):
    """The LR fastai reads off point ``index``: ``minimum`` divides it by 10."""
    return lrs[index] / 10 if method == "minimum" else lrs[index]


@pytest.fixture(params=FIXTURES, ids=lambda p: p.stem, scope="module")
def fx(request):
    """One recorded fastai run, parsed."""
    return json.loads(request.param.read_text())


def test_fixtures_exist():
    assert len(FIXTURES) >= 8, "expected the eight recorded fastai runs"


def test_fixture_window_is_fastais(fx):
    """Guards the assumptions below: lr_find's window starts at num_it // 10 = our default skip_start."""
    assert fx["num_it"] // 10 == fx["window"]["skip_start"] == 10
    assert fx["window"]["skip_end"] == 5
    assert len(fx["raw_losses"]) == len(fx["lrs"]) == len(fx["losses"])


@pytest.mark.parametrize("method", FASTAI_METHODS)
def test_window_suggestion_matches_fastai(fx, method):
    lrs, losses = floats(fx["window"]["lrs"]), floats(fx["window"]["losses"])
    s = lrfind.suggest(lrs, losses, method, skip_start=0, skip_end=0)
    assert s.method == method
    assert s.lr == pytest.approx(fx["suggestions"][method], rel=REL_TOL)
    assert s.lr == point_lr(lrs, method, s.index)
    if method != "minimum":  # fastai's minimum divides, so the recorder cannot name its point
        assert s.index == fx["suggestion_indices"][method]


@pytest.mark.parametrize("method", FASTAI_METHODS)
def test_default_window_on_full_recording_matches_fastai(fx, method):
    lrs, losses = floats(fx["lrs"]), floats(fx["losses"])
    s = lrfind.suggest(lrs, losses, method)
    assert s.lr == pytest.approx(fx["suggestions"][method], rel=REL_TOL)
    assert s.lr == point_lr(lrs, method, s.index)
    if method != "minimum":
        assert s.index == fx["window"]["skip_start"] + fx["suggestion_indices"][method]


def test_debiased_ema_is_avg_smooth_loss(fx):
    raw, theirs = floats(fx["raw_losses"]), floats(fx["losses"])
    ours = lrfind.ema(raw, alpha=0.02, debias=True)
    n = finite_prefix(raw)
    assert n >= 48, "every recording has a real curve before any overflow"
    np.testing.assert_allclose(ours[:n], theirs[:n], rtol=1e-5, atol=0)
    # After the first NaN/inf raw loss both stay non-finite: neither hides an overflow.
    assert not np.isfinite(ours[n:]).any()
    assert not np.isfinite(theirs[n:]).any()
