"""The PyTorch range test: ``range_test`` for one call, ``LRFinder`` to keep state between calls.

Needs the ``torch`` extra (``pip install 'lrfind[torch]'``); tqdm draws the progress bar when
it is installed, matplotlib (the ``plot`` extra) draws ``RangeTestResult.plot``.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised in an environment without torch
    raise ImportError("lrfind.torch needs PyTorch: pip install 'lrfind[torch]'") from None

from lrfind.torch._range_test import LRFinder, range_test
from lrfind.torch._state import Snapshot

__all__ = ["LRFinder", "Snapshot", "range_test"]
