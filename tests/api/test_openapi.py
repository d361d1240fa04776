"""The OpenAPI document against the live service: schemathesis finds no 5xx and no answer
that breaks the document, on every route, with both made-up and real request ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from imgsvc.api import openapi
from imgsvc.app import create_app

from ..conftest import ImageHost, Service, jpeg_bytes, running_service, settings_for

pytestmark = pytest.mark.anyio

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 25  # per operation; enough to cover every field's kinds on this 2-core machine


def fuzz(base_url: str, document: dict[str, Any], real_id: str, key: str = "") -> list[str]:
    """Run every operation's generated cases (sending `key` as a bearer key when given);
    the operations that were tested."""
    schema = schemathesis.openapi.from_dict(document)
    tested: list[str] = []
    with requests.Session() as session:
        if key:
            session.headers["Authorization"] = f"Bearer {key}"
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


async def test_schemathesis_finds_nothing_with_api_keys_on(
    tmp_path: Path, image_host: ImageHost
) -> None:
    """The same with IMGSVC_API_KEYS set: the 401s and the per-key 404s fit the document."""
    key = "fuzz-key-0123456789abcdef"
    async with running_service(settings_for(tmp_path / "data", api_keys=(key,))) as service:
        url = image_host.add("/one.jpg", jpeg_bytes(200, 100))
        owner = service.with_key(key)
        status, answer = await owner.upload(f"S. No.,Product Name,Input Image Urls\n1,One,{url}\n")
        assert status == 202
        await owner.wait(answer["request_id"])
        _, document = await service.get("/openapi.json")
        tested = await asyncio.to_thread(fuzz, service.url, document, answer["request_id"], key)
    assert len(tested) == len([m for item in document["paths"].values() for m in item])


async def test_the_served_document_passes_an_openapi_validator(service: Service) -> None:
    """openapi-spec-validator checks the document against the OpenAPI 3.0 specification's
    own schema and follows every $ref, as code generators and gateways will."""
    status, document = await service.get("/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.0.")
    validate(document)


# Files, not API: the Swagger UI assets and the page are mounted, and its script is one file.
ASSETS = {"/docs/init.js"}


def served_operations(app: Starlette) -> set[tuple[str, str]]:
    """(path, method) for every route the app serves, but static files."""
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route) or route.path in ASSETS:
            continue
        # Starlette adds HEAD to every GET route; it is the GET without a body.
        found |= {(route.path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return found


def test_every_route_of_the_app_is_in_the_document(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path / "data"))
    document = openapi.document(app.routes)
    documented = {(path, m) for path, item in document["paths"].items() for m in item}
    served = served_operations(app)
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented routes the app does not serve"
    assert len(served) >= 16  # the walk found the routes of every module
    named = {r.name for r in app.routes if isinstance(r, Route) and r.path not in ASSETS}
    assert set(openapi.operations()) == named, "operations in openapi.py for no route"


def test_guarded_operations_declare_the_optional_key_and_its_401(tmp_path: Path) -> None:
    document = openapi.document(create_app(settings_for(tmp_path / "data")).routes)
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "only when the service is started with IMGSVC_API_KEYS" in scheme["description"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            guarded = path.startswith("/api/") and not path.startswith("/api/image/")
            assert ("401" in operation["responses"]) == guarded, (method, path)
            expected: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}] if guarded else []
            assert operation["security"] == expected, (method, path)
