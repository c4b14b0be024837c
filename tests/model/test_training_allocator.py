"""retain_freed_memory: a freed large block stays with the process (so the next training step
reuses it instead of faulting fresh pages in), which it does not by default."""
import os
import subprocess
import sys

import pytest

RSS_AFTER_FREE = r"""
import torch
from ovsam_model.benchmark.timing import status_kib
from ovsam_model.training.allocator import retain_freed_memory

def resident_mb():
    return status_kib("VmRSS") / 1024

def kept_after_free():
    before = resident_mb()
    block = torch.ones(32 * 2**20)  # 128 MB of float32, every page written
    allocated = resident_mb() - before
    del block
    return allocated, resident_mb() - before

default_allocated, default_kept = kept_after_free()
applied = retain_freed_memory()
retained_allocated, retained_kept = kept_after_free()
print(applied, default_allocated, default_kept, retained_allocated, retained_kept)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) is what it tunes")
def test_freed_blocks_stay_in_the_process_only_once_retained():
    # glibc's defaults, whatever this shell preloads or tunes
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    out = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE], capture_output=True, text=True, check=True, env=env)
    applied, default_allocated, default_kept, retained_allocated, retained_kept = out.stdout.split()
    assert applied == "True"
    # By default the 128 MB block is an mmap that goes back to the OS when freed.
    assert float(default_allocated) > 100
    assert float(default_kept) < 20
    # Retained: the same block comes from the heap and stays resident once freed.
    assert float(retained_allocated) > 100
    assert float(retained_kept) > 100
