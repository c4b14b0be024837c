"""Shared test set-up: the machine has 2 cores, so every test process uses one torch thread."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the interface tests run without torch
    pass
