from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests import servers


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The defaults, whatever this machine's ACTIVATION_* variables say.
    transport = httpx.ASGITransport(app=create_app(Settings.model_construct()))
    async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as c:
        yield c


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real `python -m service` on loopback for the whole session."""
    with servers.running() as (base, _):
        yield base
