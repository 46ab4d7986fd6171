"""Drop-in replacements for other LR finders' APIs, running on lrfind's engine.

``lrfind.compat.torch_lr_finder`` is torch-lr-finder 0.2.2's API (``LRFinder``,
``TrainDataLoaderIter``, ``ValDataLoaderIter``): change the import line, keep the code, and get
the same curve and the same suggestion, the model restored exactly after every run (also on an
exception), and lrfind's analysis of the run in ``lr_finder.result``.
"""
