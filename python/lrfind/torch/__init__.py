"""The PyTorch range test: ``range_test`` for one call, ``LRFinder`` to keep state between calls,
``parallel_range_test`` for many sweeps at once.

Needs the ``torch`` extra (``pip install 'lrfind[torch]'``); tqdm draws the progress bar when
it is installed, matplotlib (the ``plot`` extra) draws ``RangeTestResult.plot``.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised in an environment without torch
    raise ImportError("lrfind.torch needs PyTorch: pip install 'lrfind[torch]'") from None

from lrfind.torch._parallel import parallel_range_test
from lrfind.torch._range_test import LRFinder, StoppedRankError, range_test
from lrfind.torch._state import Snapshot

__all__ = ["LRFinder", "Snapshot", "StoppedRankError", "parallel_range_test", "range_test"]
