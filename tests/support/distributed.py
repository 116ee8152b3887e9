"""Run a test function on 2 CPU processes of a gloo process group (the DDP tests without Lightning)."""

from __future__ import annotations

import datetime
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp

__all__ = ["run_on_ranks"]

TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, timeout: float, worker: Callable[..., None], args: tuple) -> None:
    torch.set_num_threads(1)  # two ranks on two cores must not oversubscribe them
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout))
    try:
        worker(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_on_ranks(worker: Callable[..., None], *args: Any, world_size: int = 2, timeout: float = TIMEOUT_S) -> None:
    """Call ``worker(rank, world_size, *args)`` (a module-level function) in ``world_size`` spawned processes,
    each in an initialised gloo group; the test fails if they do not all finish within ``timeout`` seconds."""
    context = torch_mp.spawn(_entry, args=(world_size, _free_port(), timeout, worker, args), nprocs=world_size, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {world_size}-process gloo run did not finish in {timeout} s")
