"""Every documented HTTP operation fed bodies and parameters generated from the app's own OpenAPI schema: some
shaped like the schema, some near misses (a field of the wrong type, one missing, one extra), some anything at
all (any JSON, any bytes, any content type). Each answer is a success or a 4xx in the one JSON error shape, never
a 5xx or a logged exception, and no session is left behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.server.fuzzing import (
    LogWatcher,
    app_client,
    assert_json_error,
    assert_no_sessions,
    examples,
    json_values,
    tried,
)

CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "multipart/form-data",
    "application/octet-stream",
]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    schema: dict[str, Any]
    """The operation's OpenAPI object."""

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("fuzz-http")) as test_client:
        yield test_client


def schema_of(client: TestClient) -> dict[str, Any]:
    app = client.app
    openapi: dict[str, Any] = app.openapi()  # type: ignore[attr-defined]
    return openapi


def operations(openapi: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method, path, operation)
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
    ]


def shaped_like(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit `schema` (the JSON Schema subset FastAPI writes for this app)."""
    if "$ref" in schema:
        return shaped_like(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    if "anyOf" in schema:
        return st.one_of([shaped_like(option, components) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {name: shaped_like(properties[name], components) for name in required},
            optional={name: shaped_like(sub, components) for name, sub in properties.items() if name not in required},
        )
    if kind == "array":
        return st.lists(shaped_like(schema.get("items", {}), components), max_size=3)
    leaves: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(max_size=40),
        "integer": st.integers(),
        "number": st.floats(allow_nan=False),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    return leaves.get(kind, json_values) if isinstance(kind, str) else json_values


def near_misses(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Objects of the schema's shape with one field broken: of any type, missing, or joined by a stranger."""
    shaped = shaped_like(schema, components)

    def break_one(value: Any, data: st.DataObject) -> Any:
        if not isinstance(value, dict):
            return value
        broken = dict(value)
        action = data.draw(st.sampled_from(["retype", "drop", "add"]))
        if action == "add" or not broken:
            broken[data.draw(st.text(max_size=10))] = data.draw(json_values)
        elif action == "drop":
            del broken[data.draw(st.sampled_from(sorted(broken)))]
        else:
            broken[data.draw(st.sampled_from(sorted(broken)))] = data.draw(json_values)
        return broken

    return st.tuples(shaped, st.data()).map(lambda pair: break_one(*pair))


@st.composite
def requests(draw: st.DrawFn, openapi: dict[str, Any]) -> tuple[Operation, str, dict[str, Any]]:
    """(operation, URL, keyword arguments for `TestClient.request`)."""
    operation = draw(st.sampled_from(operations(openapi)))
    components = openapi.get("components", {}).get("schemas", {})
    url = operation.path
    for parameter in operation.schema.get("parameters", []):
        if parameter["in"] == "path":
            value = draw(st.sampled_from(["default", "0" * 32]) | st.text(min_size=1, max_size=80))
            url = url.replace("{" + parameter["name"] + "}", quote(value, safe=""))
    arguments: dict[str, Any] = {}
    content = operation.schema.get("requestBody", {}).get("content", {})
    anything = st.fixed_dictionaries(
        {
            "content": st.binary(max_size=2000),
            "headers": st.fixed_dictionaries({"content-type": st.sampled_from(CONTENT_TYPES)}),
        }
    )
    if "application/json" in content:
        body_schema = content["application/json"]["schema"]
        body = st.one_of(shaped_like(body_schema, components), near_misses(body_schema, components), json_values)
        json_header = {"content-type": "application/json"}
        as_json = body.map(lambda value: {"content": json.dumps(value), "headers": json_header})
        arguments = draw(as_json | anything)
    elif "multipart/form-data" in content:
        fields = list(components[content["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]]["properties"])
        upload = st.tuples(
            st.sampled_from(fields) | st.text(min_size=1, max_size=10),
            st.text(max_size=80),
            st.binary(max_size=2000),
            st.sampled_from(["image/png", "image/jpeg", "text/plain", ""]),
        ).map(lambda part: {"files": {part[0]: (part[1], part[2], part[3])}})
        arguments = draw(upload | anything)
    elif draw(st.booleans()):
        arguments = draw(anything)
    return operation, url, arguments


def test_the_generator_covers_every_documented_operation(client: TestClient) -> None:
    documented = {str(operation) for operation in operations(schema_of(client))}
    assert {"POST /api/sessions", "POST /api/avatars", "DELETE /api/sessions/{session_id}"} <= documented


@examples(150)
@given(data=st.data())
def test_any_request_to_a_documented_operation_gets_a_success_or_a_json_4xx(
    client: TestClient, error_logs: LogWatcher, data: st.DataObject
) -> None:
    operation, url, arguments = data.draw(requests(schema_of(client)), label="request")
    tried(f"HTTP {operation}")
    response = client.request(operation.method.upper(), url, **arguments)
    if response.status_code >= 400:
        assert_json_error(response)
    else:
        assert response.status_code < 300, (response.status_code, response.text[:300])
    if operation.method == "post" and operation.path == "/api/sessions" and response.status_code == 201:
        assert client.delete(f"/api/sessions/{response.json()['session_id']}").status_code == 204
    error_logs.assert_quiet()
    assert_no_sessions(client)
