from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests import servers

pytest_plugins = ("tests.browsing",)  # the browser and visit fixtures


#: Every in-process test runs as served directly and as served behind a proxy's path prefix
#: (uvicorn --root-path /api puts the prefix in front of every path the application sees).
ROOT_PATHS = ["", "/api"]


@pytest.fixture(params=ROOT_PATHS, ids=["no-root-path", "root-path"])
def root(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def asgi_client(app: object, root: str = "") -> httpx.AsyncClient:
    """An httpx client for ``app`` in-process, as uvicorn serves it with ``--root-path root``."""
    transport = httpx.ASGITransport(app=app, root_path=root)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=f"http://service.test{root}")


@pytest.fixture
async def client(root: str) -> AsyncIterator[httpx.AsyncClient]:
    # The defaults, whatever this machine's ACTIVATION_* variables say.
    async with asgi_client(create_app(Settings.model_construct()), root) as c:
        yield c


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """A real `python -m service` on loopback for the whole session."""
    with servers.running() as (base, _):
        yield base
