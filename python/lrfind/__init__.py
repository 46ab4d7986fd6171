"""lrfind: the LR range test (Leslie Smith, 2017) with a Rust core.

Sweep the learning rate exponentially from ``min_lr`` to ``max_lr``, one training step per LR,
record the loss, stop when it explodes, suggest an LR (``auto``, the method that trains best on
lrfind's quality benchmark, with a confidence and a range; the seed's steepest descent with a
safety back-off and the peers' rules are there too), and diagnose the curve. The numerics run
in Rust over numpy buffers, for one sweep or a million. ``import lrfind`` needs only numpy; the
PyTorch layer lives in ``lrfind.torch``.
"""

from lrfind._core import (
    METHODS,
    Analysis,
    BatchAnalysis,
    Diagnosis,
    DivergenceDetector,
    Ema,
    Suggestion,
    analyze,
    confidence_level,
    ema,
    log_gradient,
    one_cycle,
    one_cycle_at,
    suggest,
    sweep_lrs,
    warmup_cosine,
    warmup_cosine_at,
)
from lrfind.analysis import analyze_batch, diagnose
from lrfind.finder import LearningRateFinder, RangeTestResult
from lrfind.parallel import ParallelResult
from lrfind.result import Refinement

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "Analysis",
    "BatchAnalysis",
    "Diagnosis",
    "DivergenceDetector",
    "Ema",
    "LearningRateFinder",
    "ParallelResult",
    "RangeTestResult",
    "Refinement",
    "Suggestion",
    "analyze",
    "analyze_batch",
    "confidence_level",
    "diagnose",
    "ema",
    "log_gradient",
    "one_cycle",
    "one_cycle_at",
    "suggest",
    "sweep_lrs",
    "warmup_cosine",
    "warmup_cosine_at",
]
