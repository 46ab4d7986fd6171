"""torch-lr-finder 0.2.2's API on lrfind's engine: ``from lrfind.compat.torch_lr_finder import
LRFinder`` instead of ``from torch_lr_finder import LRFinder``, and nothing else changes.

Needs the ``torch`` extra (``pip install 'lrfind[torch]'``); ``plot`` needs matplotlib.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised in an environment without torch
    raise ImportError("lrfind.compat.torch_lr_finder needs PyTorch: pip install 'lrfind[torch]'") from None

from lrfind.compat.torch_lr_finder.lr_finder import DataLoaderIter, LRFinder, TrainDataLoaderIter, ValDataLoaderIter

__all__ = ["DataLoaderIter", "LRFinder", "TrainDataLoaderIter", "ValDataLoaderIter"]
