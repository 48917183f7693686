"""RTP port pool: even ports with RTCP on port + 1, FIFO reuse, exhaustion."""

from __future__ import annotations

import pytest

from callbridge.rtp.port_pool import PortPool, PortPoolExhausted


def test_allocates_even_ports_whose_rtcp_port_is_in_range() -> None:
    pool = PortPool(20001, 20008)
    assert pool.capacity == 3
    ports = [pool.allocate() for _ in range(3)]
    assert ports == [20002, 20004, 20006]
    assert pool.in_use == frozenset(ports)
    with pytest.raises(PortPoolExhausted, match="no free RTP port in 20001-20008"):
        pool.allocate()


def test_release_goes_to_the_back_and_is_idempotent() -> None:
    pool = PortPool(30000, 30005)
    a = pool.allocate()
    pool.release(a)
    pool.release(a)
    assert pool.available == 3
    assert [pool.allocate() for _ in range(3)] == [30002, 30004, 30000]
    with pytest.raises(ValueError, match="not an RTP port"):
        pool.release(30001)


@pytest.mark.parametrize("bad", [(80, 1000), (20000, 19000), (20000, 70000), (20000, 20000)])
def test_invalid_ranges(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        PortPool(*bad)


def test_parse() -> None:
    pool = PortPool.parse("20000-20999")
    assert (pool.first, pool.last, pool.capacity) == (20000, 20999, 500)
    for text in ("20000", "a-b", "-5"):
        with pytest.raises(ValueError, match="20000-20999"):
            PortPool.parse(text)
