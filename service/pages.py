"""Pages for people: the activation playground at / and the API docs, all served locally.

Swagger UI (/docs) and ReDoc (/redoc) load their JavaScript, CSS and favicon
from this service: the files the ``fastapi-offline`` package ships (pinned in
deploy/requirements.lock; Swagger UI 5, Apache-2.0; ReDoc 2, MIT; the package
itself MIT), with Google fonts,
Swagger's online validator and ReDoc's remote logo turned off, so the pages
work in an air-gapped cluster.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, HTMLResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
DOC_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"

#: How service.routes registers these pages: HTML, outside the OpenAPI document.
HTML: dict[str, Any] = {"response_class": HTMLResponse}


def mount_static(app: FastAPI) -> None:
    app.mount("/static/docs", StaticFiles(directory=DOC_ASSETS), name="doc-assets")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _prefix(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def playground() -> FileResponse:
    """The activation playground: each function plotted beside its derivative."""
    return FileResponse(STATIC / "playground.html", media_type="text/html")


def swagger_ui(request: Request) -> HTMLResponse:
    base = _prefix(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}/openapi.json",
        title="activation-service - API docs",
        swagger_js_url=f"{base}/static/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{base}/static/docs/swagger-ui.css",
        swagger_favicon_url=f"{base}/static/docs/favicon.png",
        # No badge from validator.swagger.io: nothing may leave the host.
        swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True},
    )


#: The one external URL in ReDoc's bundle: its "powered by" logo.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    return (DOC_ASSETS / "redoc.standalone.js").read_bytes().replace(_REDOC_LOGO, b"static/docs/favicon.png")


def redoc_bundle() -> Response:
    """ReDoc's bundle with its logo served from here, so the page makes no outside request."""
    return Response(_redoc_bundle(), media_type="text/javascript", headers={"cache-control": "max-age=86400"})


def redoc(request: Request) -> HTMLResponse:
    base = _prefix(request)
    return get_redoc_html(
        openapi_url=f"{base}/openapi.json",
        title="activation-service - API reference",
        redoc_js_url=f"{base}/static/redoc.standalone.js",
        redoc_favicon_url=f"{base}/static/docs/favicon.png",
        with_google_fonts=False,
    )
