"""Shared test settings: hypothesis runs without deadlines (a slow CI machine must not turn a
correct result into a failure: timings belong in benches/)."""

from hypothesis import settings

settings.register_profile("lrfind", deadline=None, print_blob=True)
settings.load_profile("lrfind")
