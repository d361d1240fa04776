"""The OpenAPI document against the live service: schemathesis finds no 5xx and no answer
that breaks the document, on every route, with both made-up and real request ids."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import ImageHost, Service, jpeg_bytes

pytestmark = pytest.mark.anyio

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 25  # per operation; enough to cover every field's kinds on this 2-core machine


def fuzz(base_url: str, document: dict[str, Any], real_id: str) -> list[str]:
    """Run every operation's generated cases; the operations that were tested."""
    schema = schemathesis.openapi.from_dict(document)
    tested: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                if "request_id" in (case.path_parameters or {}) and case.path_parameters[
                    "request_id"
                ].endswith("0"):
                    case.path_parameters["request_id"] = real_id  # reach the found answers too
                response = case.call(base_url=base_url, session=session, timeout=30)
                case.validate_response(response, checks=CHECKS)

            check()
            tested.append(operation.label)
    return tested


async def test_schemathesis_finds_nothing(service: Service, image_host: ImageHost) -> None:
    url = image_host.add("/one.jpg", jpeg_bytes(200, 100))
    _, answer = await service.upload(f"S. No.,Product Name,Input Image Urls\n1,One,{url}\n")
    await service.wait(answer["request_id"])
    _, document = await service.get("/openapi.json")
    tested = await asyncio.to_thread(fuzz, service.url, document, answer["request_id"])
    assert len(tested) == len([m for item in document["paths"].values() for m in item])
