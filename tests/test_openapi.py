"""The OpenAPI document: committed, complete, and its examples work."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from service import activations, openapi
from service.app import create_fastapi_app

DOC = create_fastapi_app().openapi()
OPERATIONS = {(path, method): op for path, item in DOC["paths"].items() for method, op in item.items()}


def test_committed_openapi_matches_the_app() -> None:
    # Regenerate with: python -m service.openapi
    assert openapi.PATH.read_text(encoding="utf-8") == openapi.render()


def test_operation_ids_are_stable() -> None:
    assert {op["operationId"] for op in OPERATIONS.values()} == {
        "activate",
        "derivative",
        "list_activations",
        "get_activation",
        "healthz",
        "readyz",
        "metrics",
    }


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
def test_compute_operations_document_every_status(path: str) -> None:
    responses = OPERATIONS[(path, "post")]["responses"]
    assert {"200", "400", "415", "422"} <= set(responses)
    for status in ("400", "415", "422"):
        assert responses[status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }


def test_catalog_entry_documents_404() -> None:
    assert "404" in OPERATIONS[("/activations/{name}", "get")]["responses"]


def test_activation_enum_is_the_registry() -> None:
    schema = DOC["components"]["schemas"]["ActivateRequest"]["properties"]["activation"]
    assert schema["enum"] == activations.all_names()


def test_no_request_field_is_nullable() -> None:
    for name in ("ActivateRequest", "DerivativeRequest"):
        text = json.dumps(DOC["components"]["schemas"][name])
        assert '"null"' not in text, name
        assert '"default": null' not in text, name


def _examples(path: str) -> dict[str, Any]:
    body = OPERATIONS[(path, "post")]["requestBody"]
    return body["content"]["application/json"]["examples"]


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
def test_every_registered_activation_has_a_request_example(path: str) -> None:
    assert set(activations.names()) <= set(_examples(path))


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
async def test_every_request_example_succeeds(client: httpx.AsyncClient, path: str) -> None:
    for name, example in _examples(path).items():
        r = await client.post(path, json=example["value"])
        assert r.status_code == 200, (name, r.text)


def test_media_type_objects_hold_only_what_openapi_allows() -> None:
    # OpenAPI 3.1 media type objects take schema, example(s) and encoding: a description
    # there made the document invalid (it now lives in the schema).
    for item in DOC["paths"].values():
        for op in item.values():
            bodies = [op.get("requestBody", {}), *op["responses"].values()]
            for body in bodies:
                for media in body.get("content", {}).values():
                    assert set(media) <= {"schema", "example", "examples", "encoding"}, media


def test_every_operation_says_whether_it_needs_a_key_and_the_document_its_licence() -> None:
    assert DOC["info"]["license"]["identifier"] == "MIT"
    for (path, _), op in OPERATIONS.items():
        assert "security" in op, path
        assert (op["security"] == []) == (path in ("/healthz", "/readyz", "/metrics")), path
