import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks: extra intra-op threads only spin and stall on a shared machine (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
