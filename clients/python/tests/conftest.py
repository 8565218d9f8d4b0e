"""Fixtures of the SDK's tests: the paid network of ``testnet``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testnet import WAIT, Network, Node, guest, run, start_network

__all__ = ["WAIT", "Network", "Node", "guest", "run"]


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    with start_network() as net:
        yield net


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
