"""keep_freed_memory: inside it a freed large block is reused without page faults; outside, glibc's defaults."""
import resource

import numpy as np
import pytest

from dff_core import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc only")

MB = 1 << 20


def _faults_of_a_second_block(size: int = 96 * MB) -> int:
    """Minor page faults while filling a block of ``size`` bytes right after a block as large was freed."""
    a = np.ones(size // 4, np.float32)
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = np.ones(size // 4, np.float32)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del b
    return faults


def test_freed_blocks_are_reused_inside_and_given_back_after():
    outside = _faults_of_a_second_block()           # > 32 MB: a fresh mapping each time
    with heap.keep_freed_memory() as kept:
        assert kept is True
        with heap.keep_freed_memory() as inner:     # nested: the outer block keeps the settings
            assert inner is True
        assert heap._depth == 1
        inside = _faults_of_a_second_block()
    assert heap._depth == 0
    after = _faults_of_a_second_block()
    assert outside >= 16, outside                   # 96 MB: 24,576 pages of 4 KB, or 48 huge pages
    assert inside * 8 < outside, (inside, outside)
    assert after * 2 > outside, (after, outside)    # glibc's defaults are back


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("DFF_KEEP_FREED_MEMORY", "0")
    with heap.keep_freed_memory() as kept:
        assert kept is False
        assert heap._depth == 0
