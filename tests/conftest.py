"""Shared test settings: hypothesis runs without deadlines (a slow CI machine must not turn a
correct result into a failure: timings belong in benches/), and the torch tests' thread fixture."""

import pytest
from hypothesis import settings

settings.register_profile("lrfind", deadline=None, print_blob=True)
settings.load_profile("lrfind")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, which only spin when the CPUs are shared;
    the previous count comes back after the module."""
    import torch  # only the torch test modules ask for this fixture

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
