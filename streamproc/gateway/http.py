"""What every response shares: the error body, the error handlers and the access log.

Every refusal has the same machine-readable body::

    {"error": {"code": "rate_limited", "message": "…"}, "request_id": "…"}

``code`` is stable (``docs/gateway.md`` lists them); ``message`` is for people. No handler
lets a traceback reach a client: an unexpected exception is logged and answered 500
``internal_error`` (the fuzz test holds the API to never doing that).

The access log writes one ``http_request`` line per request, after its response (for a
stream: when it ends): method, route template, status, latency, tenant, event id, request
id and client address; the prompt only when ``gateway.log_prompts`` is on. Never the
``Authorization`` header or any other header.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamproc.errors import RecordRejected, ServiceRefused, TransientError
from streamproc.gateway.auth import AuthError
from streamproc.gateway.metrics import GatewayMetrics
from streamproc.gateway.submit import RequestError

log = structlog.get_logger("streamproc.gateway.access")
REQUEST_ID_HEADER = "x-request-id"


class ErrorDetail(BaseModel):
    """One refusal: a stable ``code`` and a readable ``message``."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail
    request_id: str


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The JSON error answer (and the ``code`` noted for the access log and metrics)."""
    state = request.scope.setdefault("state", {})
    state["error_code"] = code
    body = {"error": {"code": code, "message": message}, "request_id": request_id_of(request)}
    return JSONResponse(body, status_code=status, headers=headers)


def request_id_of(request: Request) -> str:
    """The id of this request (the client's ``X-Request-ID`` when sane, else a new one; set
    by :class:`AccessLog`)."""
    state = request.scope.setdefault("state", {})
    return str(state.setdefault("request_id", uuid.uuid4().hex))


def install_error_handlers(app: FastAPI, metrics: GatewayMetrics) -> None:
    """Map every exception a route may raise to the error body."""

    def refused(request: Request, status: int, code: str, message: str, **kw: Any) -> JSONResponse:
        metrics.rejected.labels(code).inc()
        return error_response(request, status, code, message, **kw)

    @app.exception_handler(RequestError)
    async def _request(request: Request, exc: RequestError) -> JSONResponse:
        return refused(request, exc.status, exc.code, exc.message, headers=exc.headers or None)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return refused(request, exc.status, exc.code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return refused(request, 422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RecordRejected)
    async def _too_large(request: Request, exc: RecordRejected) -> JSONResponse:
        return refused(request, 413, "record_too_large", str(exc))

    @app.exception_handler(TransientError)
    async def _outage(request: Request, exc: TransientError) -> JSONResponse:
        log.warning("gateway_dependency_unavailable", error=str(exc))
        return error_response(
            request,
            503,
            "unavailable",
            "a service behind the gateway does not answer; retry (with the same "
            "Idempotency-Key) after Retry-After seconds",
            {"Retry-After": "1"},
        )

    @app.exception_handler(ServiceRefused)
    async def _refused(request: Request, exc: ServiceRefused) -> JSONResponse:
        log.error("gateway_dependency_refused", error=str(exc))
        return error_response(
            request,
            503,
            "unavailable",
            "a service behind the gateway refuses it; retry later",
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Logged by AccessLog, which Starlette re-raises the exception to.
        return error_response(request, 500, "internal_error", "unexpected error (logged)")


class AccessLog:
    """ASGI middleware: one ``http_request`` log line and the request metrics."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, *, log_prompts: bool) -> None:
        self.app = app
        self._metrics = metrics
        self._log_prompts = log_prompts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        sane = 0 < len(given) <= 64 and given.isascii() and given.decode().isprintable()
        state["request_id"] = given.decode() if sane else uuid.uuid4().hex

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), str(state["request_id"]).encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            # outcome: logged once; the client gets a 500 internal_error body unless a response
            # had already started.
            # Starlette re-raises what its 500 handler answered; this is where it ends,
            # as one log line rather than a traceback from the server.
            log.error(
                "gateway_internal_error",
                error_class=type(exc).__name__,
                error=str(exc)[:500],
                request_id=state["request_id"],
            )
            if status == 500 and not state.get("error_code"):
                body = b'{"error":{"code":"internal_error","message":"unexpected error"}}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            method = scope["method"]
            self._metrics.requests.labels(route, method, str(status)).inc()
            if not route.endswith("/events"):
                self._metrics.latency.labels(route, method).observe(elapsed)
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "tenant": state.get("tenant"),
                "event_id": state.get("event_id"),
                "request_id": state.get("request_id"),
                "client": (scope.get("client") or ("", 0))[0],
            }
            if state.get("error_code"):
                fields["error_code"] = state["error_code"]
            if self._log_prompts and state.get("prompt") is not None:
                fields["prompt"] = state["prompt"]
            log.info("http_request", **fields)
