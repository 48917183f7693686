"""configure_gc: the start-up heap frozen, the gen-0 threshold set, every pause observed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from callbridge.observability.metrics import GC_PAUSES
from callbridge.server.run import _GC_OBSERVER, configure_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if _GC_OBSERVER in gc.callbacks:
        gc.callbacks.remove(_GC_OBSERVER)


def pauses(generation: int) -> float:
    for metric in GC_PAUSES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels["generation"] == str(generation):
                return sample.value
    return 0.0


def test_configure_gc_freezes_tunes_and_observes(restore_gc: None) -> None:
    configure_gc(12_345)
    assert gc.get_freeze_count() > 1000  # the start-up heap is out of the collector's way
    assert gc.get_threshold()[0] == 12_345
    before = pauses(2)
    gc.collect()
    assert pauses(2) == before + 1
    configure_gc(12_345)  # idempotent: one observer
    assert gc.callbacks.count(_GC_OBSERVER) == 1


def test_zero_keeps_pythons_threshold(restore_gc: None) -> None:
    default = gc.get_threshold()[0]
    configure_gc(0)
    assert gc.get_threshold()[0] == default
