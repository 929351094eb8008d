"""Fuzzing every operation from the app's own OpenAPI document (schemathesis).

Valid and invalid requests, generated from the schema: no response may be a
5xx, and every response must match its documented status codes, media types
and schemas.  Three configurations, so that more documented refusals are met:
the defaults; a two-element limit (413) with an API key sent; API keys set and
none sent (401).  The body and Jacobian limits need inputs the generator
rarely makes; tests/test_production.py covers them.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.settings import Settings


@schemathesis.serializer("application/x-npy", "application/x-npz")
def raw_bytes(ctx: object, value: object) -> bytes:
    """Binary bodies as generated: arbitrary bytes exercise every .npy/.npz error path."""
    if isinstance(value, bytes):
        return value
    return str(value).encode()


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings.model_construct()))


#: A body can be schema-valid and still wrong for the activation it names (elu
#: has no negative_slope; softmax needs an axis in range; exp(1000) overflows):
#: JSON Schema cannot say so, and the service answers those with a 422 that
#: names the field.  Every other check stays on, including that invalid data
#: is rejected.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)


KEY = "fuzz-key"
TIGHT = Settings.model_construct(max_body_bytes=1024, max_elements=2, max_jacobian_elements=3, api_keys=[KEY])
tight = schemathesis.openapi.from_asgi("/openapi.json", create_app(TIGHT))
# Here an invalid request may also be too large: it is refused by its size (413) before it is parsed.
_rejection = tight.config.checks.negative_data_rejection
_rejection.expected_statuses = [*_rejection.expected_statuses, "413"]


@tight.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_under_tight_limits(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"authorization": f"Bearer {KEY}"}, excluded_checks=EXCLUDED)


@tight.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_without_the_key(case: schemathesis.Case) -> None:
    case.call_and_validate(excluded_checks=EXCLUDED)
