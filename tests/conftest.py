"""Shared fixtures: a real cowdns server on a loopback port, in each table mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cowdns.app import Running
from tests.helpers import address, make_config, start_server

MODES = ["cow", "locked"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path, mode: str) -> Running:
    """A server for the example zones, started in ``mode`` on a free loopback port."""
    return await start_server(nursery, make_config(tmp_path, mode=mode))


@pytest.fixture
def where(server: Running) -> tuple[str, int]:
    return address(server)
