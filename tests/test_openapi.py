"""The OpenAPI document: committed, complete, and its examples work."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from service import activations, codec, openapi
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
        "activate_npy",
        "derivative_npy",
        "check",
        "reference",
        "profile",
        "simulate",
        "fit",
        "list_activations",
        "get_activation",
        "healthz",
        "readyz",
        "metrics",
    }


@pytest.mark.parametrize("path", ["/activate", "/derivative", "/activate/npy", "/derivative/npy"])
def test_compute_operations_document_every_status(path: str) -> None:
    responses = OPERATIONS[(path, "post")]["responses"]
    assert {"200", "400", "415", "422"} <= set(responses)
    for status in ("400", "415", "422"):
        assert responses[status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }


def test_catalog_entry_documents_404() -> None:
    assert "404" in OPERATIONS[("/activations/{name}", "get")]["responses"]


def test_activation_enum_is_the_canonical_names_and_the_aliases_are_documented() -> None:
    schema = _body("/activate")["properties"]["activation"]
    assert schema["enum"] == activations.names()
    # Two values differing only in case break enum generators (LEAKYRELU twice).
    assert len({name.upper() for name in schema["enum"]}) == len(schema["enum"])
    for entry in activations.entries():
        for alias in entry.aliases:
            assert alias in schema["description"], alias


def test_number_arrays_are_spelled_out_to_the_depth_the_server_accepts() -> None:
    # Generators give up on a recursive schema: each level is written out, none refers to itself.
    schema = DOC["components"]["schemas"]["NumberArray"]
    assert "#/components/schemas/NumberArray" not in json.dumps(schema)
    deepest = schema["anyOf"][-1]
    levels = 0
    while deepest["type"] == "array":
        deepest, levels = deepest["items"], levels + 1
    assert deepest == {"type": "number"}
    assert levels == codec.MAX_DEPTH


@pytest.mark.parametrize("path", ["/activate/npy", "/derivative/npy"])
def test_binary_operations_take_each_activation_parameter_as_its_own_query_parameter(path: str) -> None:
    op = OPERATIONS[(path, "post")]
    names = {p["name"] for p in op["parameters"]}
    every = {p.name for entry in activations.entries() for p in entry.params}
    assert every <= names
    assert "params" not in names
    assert all(p["schema"].get("type") in ("number", "integer", "string") for p in op["parameters"])
    assert set(op["responses"]["200"]["content"]) == {"application/x-npy", "application/octet-stream"}


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
def test_json_operations_document_json_alone(path: str) -> None:
    op = OPERATIONS[(path, "post")]
    assert "parameters" not in op or op["parameters"] == []
    assert set(op["requestBody"]["content"]) == {"application/json"}
    assert set(op["responses"]["200"]["content"]) == {"application/json"}


def test_the_document_names_its_server() -> None:
    assert DOC["servers"][0]["url"] == "/"


def _body(path: str) -> dict[str, Any]:
    schema: dict[str, Any] = OPERATIONS[(path, "post")]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema


def test_no_request_field_is_nullable() -> None:
    for path in ("/activate", "/derivative"):
        text = json.dumps(_body(path))
        assert '"null"' not in text, path
        assert '"default": null' not in text, path


@pytest.mark.parametrize("path", ["/activate", "/derivative"])
def test_request_bodies_are_written_in_place_so_fields_with_defaults_stay_optional(path: str) -> None:
    # openapi-typescript makes a property with a default required unless it sits under a requestBody.
    body = _body(path)
    assert "$ref" not in body
    assert body["required"] == ["activation", "x"]
    assert "default" in body["properties"]["axis"]
    assert not {"ActivateRequest", "DerivativeRequest"} & set(DOC["components"]["schemas"])


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
