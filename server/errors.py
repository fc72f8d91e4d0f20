"""One JSON error shape for every failure a client can see: `{"error": {"code": ..., "message": ...}}`.

Codes are stable identifiers a client can branch on; messages are written for the person at the browser.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the code and message the client receives."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        """`retry_after`: seconds after which asking again may succeed (a `Retry-After` header)."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}}, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception to the JSON shape, so no client ever receives a traceback or an HTML page."""

    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.code, error.message, error.retry_after)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(422, "invalid_request", _describe_validation_errors(error))

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))

    async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error while serving %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed to handle this request; see its log")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected_error)


def _describe_validation_errors(error: RequestValidationError) -> str:
    problems = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{location or 'body'}: {problem.get('msg', 'invalid')}")
    return "; ".join(problems) or "the request body is not valid"
