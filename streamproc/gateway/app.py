"""The FastAPI application: routes over the parts in :class:`Parts`.

Invariants (tested with the faults injected):

* a 202 to ``POST /v1/videos`` is sent only after the brokers acknowledged the record
  (acks=all); every refusal (4xx) is decided before anything is produced;
* one ``Idempotency-Key`` is one video: a retry with the same body answers the same id (and
  produces nothing when the first was acknowledged), another body under the key is 409;
* a tenant sees only its own videos: ids are looked up under the caller's tenant, so another
  tenant's id is 404, exactly as an id that never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Header, Request, Response, Security
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent

from streamproc import __version__
from streamproc.errors import ServiceRefused, TransientError
from streamproc.events import ControlAction, ControlEvent, EventLimits
from streamproc.gateway.auth import ApiKeys
from streamproc.gateway.http import ErrorBody, error_response, install_error_handlers
from streamproc.gateway.limits import RateLimiter
from streamproc.gateway.metrics import GatewayMetrics
from streamproc.gateway.producer import PromptProducer
from streamproc.gateway.redis import GatewayRedis
from streamproc.gateway.state import FINAL, VideoLinks, VideoView, view_of
from streamproc.gateway.status import StatusView
from streamproc.gateway.submit import (
    VIDEO_ID_PATTERN,
    RequestError,
    event_id_for,
    parse_submission,
    request_model,
    video_id_from,
)
from streamproc.gateway.videos import VideoBook, VideoRecord
from streamproc.gateway.webhooks import Webhooks
from streamproc.ledger.base import event_key
from streamproc.ledger.redis import RedisLedger
from streamproc.settings import GatewaySettings

_VIDEO_ID = re.compile(VIDEO_ID_PATTERN)
#: How often a server-sent event stream re-reads the ledger when no status event came.
SSE_POLL_S = 2.0
#: Longest life of one server-sent event stream (the client reconnects).
SSE_MAX_S = 3600.0
#: Declares the scheme in the OpenAPI document; ApiKeys reads the header itself, so that each
#: refusal has its own code.
_BEARER = HTTPBearer(auto_error=False, description="An API key: 'Bearer sp_...'.")


@dataclass
class Parts:
    """Everything the routes use, built and started by :mod:`streamproc.gateway.service`."""

    settings: GatewaySettings
    limits: EventLimits
    redis: GatewayRedis
    keys: ApiKeys
    limiter: RateLimiter
    videos: VideoBook
    producer: PromptProducer
    ledger: RedisLedger
    status: StatusView
    metrics: GatewayMetrics
    control_topic: str
    webhooks: Webhooks


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed JSON or a bad Idempotency-Key.",
        401: "Missing, unknown or expired API key.",
        403: "The key's tenant is not served.",
        404: "No such video for this tenant.",
        409: "The Idempotency-Key was used for another body, or the video already ended.",
        413: "The body is larger than gateway.max_body_bytes.",
        422: "The body breaks the event contract or the workers' limits.",
        429: "A rate limit of the tenant; see Retry-After.",
        503: "Kafka or Redis does not answer; retry after Retry-After.",
    }.items()
}


def video_links(base_url: str, video_id: str) -> VideoLinks:
    """The links of a video under ``base_url`` (empty: paths only)."""
    me = f"{base_url.rstrip('/')}/v1/videos/{video_id}"
    return VideoLinks(self=me, events=f"{me}/events", content=f"{me}/content")


def _parts(request: Request) -> Parts:
    parts: Parts = request.app.state.parts
    return parts


async def tenant_of(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> str:
    """The caller's tenant (from the API key), after its request rate limit."""
    parts = _parts(request)
    tenant = await parts.keys.tenant_of(request.headers.get("authorization"))
    request.scope["state"]["tenant"] = tenant
    decision = await parts.limiter.acquire(tenant, "requests")
    if not decision.allowed:
        parts.metrics.rate_limited.labels(tenant, "requests").inc()
        raise RequestError(
            429,
            "rate_limited",
            "too many requests for this tenant; retry after Retry-After seconds",
            {"Retry-After": decision.retry_after_header},
        )
    return tenant


Tenant = Annotated[str, Depends(tenant_of)]


async def owned(request: Request, video_id: str, tenant: Tenant) -> VideoRecord:
    """The caller's video ``video_id``, or 404 (also for another tenant's id)."""
    record = None
    if _VIDEO_ID.fullmatch(video_id):
        event_id = event_id_for(tenant, video_id)
        request.scope["state"]["event_id"] = event_id
        record = await _parts(request).videos.get(event_id)
    if record is None:
        raise RequestError(404, "not_found", "no video with this id for this API key")
    return record


Owned = Annotated[VideoRecord, Depends(owned)]


def build_app(parts: Parts) -> FastAPI:
    """The gateway's ASGI app (the access log is added by the service, around it)."""
    app = FastAPI(
        title="streamproc gateway",
        version=__version__,
        description="Submit prompts for short videos and follow them to the result. "
        "Authenticate with 'Authorization: Bearer <API key>'. See docs/gateway.md.",
    )
    app.state.parts = parts
    install_error_handlers(app, parts.metrics)
    body_schema, defs = _body_schema()

    def links(request: Request, video_id: str) -> VideoLinks:
        return video_links(parts.settings.public_url or str(request.base_url), video_id)

    async def current(request: Request, video_id: str, record: VideoRecord) -> VideoView:
        entry = await parts.ledger.get(event_key(record.event_id))
        status = parts.status.latest(record.event_id)
        return view_of(video_id, record, entry, status, links(request, video_id))

    @app.post(
        "/v1/videos",
        status_code=202,
        response_model=VideoView,
        responses=_ERRORS,
        summary="Submit a prompt",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": body_schema}}
        },
    )
    async def submit(
        request: Request,
        response: Response,
        tenant: Tenant,
        idempotency_key: Annotated[str | None, Header()] = None,
        webhook_url: Annotated[
            str | None,
            Header(description="POST the final state here, signed (see docs/gateway.md)."),
        ] = None,
    ) -> VideoView:
        """Produce the prompt event to the prompts topic (acks=all) and answer 202 with the
        video's id and links once the brokers have it. The same Idempotency-Key with the same
        body answers the same video; with another body, 409."""
        state = request.scope["state"]
        video_id = video_id_from(idempotency_key)
        if webhook_url is not None:
            _check_webhook(parts, tenant, webhook_url)
        body = await _read_body(request, parts.settings.max_body_bytes)
        now = datetime.now(UTC)
        event, record = parse_submission(
            body, tenant=tenant, video_id=video_id, limits=parts.limits, now=now
        )
        state["event_id"] = event.event_id
        state["prompt"] = event.prompt
        kind, held = await parts.videos.reserve(event.event_id, event.payload_hash(), now)
        if kind == "conflict":
            raise RequestError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request; use a new key",
            )
        response.headers["Location"] = f"/v1/videos/{video_id}"
        if kind == "accepted":
            parts.metrics.replays.labels(tenant).inc()
            return await current(request, video_id, held)
        await _produce(parts, tenant, kind, held, record, state["request_id"], webhook_url)
        return view_of(video_id, held, None, None, links(request, video_id))  # just queued

    @app.get(
        "/v1/videos/{video_id}",
        response_model=VideoView,
        responses=_ERRORS,
        summary="A video's state",
    )
    async def get_video(request: Request, video_id: str, record: Owned) -> VideoView:
        """Queued, generating (with progress), done (with the video URL), failed (with the
        reason) or cancelled."""
        return await current(request, video_id, record)

    @app.get(
        "/v1/videos/{video_id}/events",
        response_class=EventSourceResponse,
        responses=_ERRORS,
        summary="A video's states as server-sent events",
    )
    async def video_events(
        request: Request, video_id: str, record: Owned
    ) -> AsyncIterator[ServerSentEvent]:
        """One ``state`` event with the video's view now, then one at every change, until a
        final state (done, failed, cancelled); then the stream ends."""
        last: dict[str, Any] | None = None
        deadline = time.monotonic() + SSE_MAX_S
        seq = 0
        while time.monotonic() < deadline:
            try:
                view = await current(request, video_id, record)
            except TransientError:
                view = None  # Redis blinked: try again at the next wake-up
            if view is not None:
                data = view.model_dump(mode="json")
                if data != last:
                    seq += 1
                    last = data
                    yield ServerSentEvent(data=data, event="state", id=str(seq))
                if view.status in FINAL:
                    return
            await parts.status.wait(record.event_id, SSE_POLL_S)

    @app.get(
        "/v1/videos/{video_id}/content",
        status_code=302,
        responses=_ERRORS,
        response_class=RedirectResponse,
        summary="Download the MP4",
    )
    async def video_content(request: Request, video_id: str, record: Owned) -> Response:
        """A redirect to the MP4 in the object store once the video is done."""
        view = await current(request, video_id, record)
        if view.status != "done" or not view.video_url:
            raise RequestError(409, "not_ready", f"the video is {view.status}, not done")
        if not view.video_url.startswith(("http://", "https://")):
            raise RequestError(
                409,
                "content_not_served",
                f"the video is in a local store the gateway does not serve: {view.video_url}",
            )
        return RedirectResponse(view.video_url, status_code=302)

    @app.delete(
        "/v1/videos/{video_id}",
        status_code=202,
        response_model=VideoView,
        responses=_ERRORS,
        summary="Cancel a video",
    )
    async def cancel_video(request: Request, video_id: str, record: Owned) -> VideoView:
        """Send a cancel for the video to the control topic (acks=all). The video ends as
        cancelled unless it is done first; a video that already ended is 409."""
        view = await current(request, video_id, record)
        if view.status in FINAL:
            raise RequestError(409, "already_finished", f"the video is already {view.status}")
        tenant = request.scope["state"]["tenant"]
        cancel = ControlEvent(
            action=ControlAction.CANCEL,
            event_id=record.event_id,
            reason="cancelled by the client (DELETE /v1/videos)",
            issued_at=datetime.now(UTC),
        )
        await parts.producer.send(
            record.event_id,
            cancel.model_dump_json(exclude_none=True).encode(),
            tenant=tenant,
            trace_id=request.scope["state"]["request_id"],
            topic=parts.control_topic,
        )
        parts.metrics.cancels.labels(tenant).inc()
        return view

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the process serves requests."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: Kafka and Redis reachable",
        responses={503: {"description": "Kafka or Redis does not answer."}},
    )
    async def readyz() -> JSONResponse:
        """200 when the brokers (with the prompts topic) and Redis answer, else 503; the
        status topic reader is reported but never fails it (status events are best effort)."""
        kafka, redis_ok, status = await asyncio.gather(
            parts.producer.readiness(), parts.redis.readiness(), parts.status.readiness()
        )
        checks = {
            "kafka": {"ok": kafka[0], "detail": kafka[1]},
            "redis": {"ok": redis_ok[0], "detail": redis_ok[1]},
            "status_events": {"ok": status[0], "detail": status[1]},
        }
        ready = kafka[0] and redis_ok[0]
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(parts.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    async def unknown(request: Request, path: str) -> Response:
        return error_response(request, 404, "not_found", f"no route /{path}")

    _add_schema_defs(app, defs)
    return app


async def _produce(
    parts: Parts,
    tenant: str,
    kind: str,
    held: VideoRecord,
    record: bytes,
    trace_id: str,
    webhook_url: str | None,
) -> None:
    """Produce a reserved submission (its webhook registered first); undo both when it
    cannot be produced."""
    if kind == "new":
        decision = await parts.limiter.acquire(tenant, "videos")
        if not decision.allowed:
            await parts.videos.release(held)
            parts.metrics.rate_limited.labels(tenant, "videos").inc()
            raise RequestError(
                429,
                "video_rate_limited",
                "too many videos for this tenant; retry after Retry-After seconds",
                {"Retry-After": decision.retry_after_header},
            )
    started = time.perf_counter()
    try:
        if webhook_url is not None:
            await parts.webhooks.register(held.event_id, tenant, webhook_url)
        await parts.producer.send(held.event_id, record, tenant=tenant, trace_id=trace_id)
    except BaseException:
        # outcome: re-raised (the request is answered as an error); a new reservation and
        # its webhook are released first, so a retry with the same key produces again.
        if kind == "new":
            # Undone best effort: a reservation expires, a hook without an answer is given up
            # when it expires; a retry with the key produces (and registers) again.
            with contextlib.suppress(TransientError, ServiceRefused):
                await parts.videos.release(held)
                if webhook_url is not None:
                    await parts.webhooks.unregister(held.event_id)
        raise
    parts.metrics.produce_latency.observe(time.perf_counter() - started)
    parts.metrics.accepted.labels(tenant).inc()
    # The broker has the record: the answer is 202 even when Redis fails now. The record then
    # stays 'pending', so a retry with the key produces once more (the ledger answers it the
    # same).
    with contextlib.suppress(TransientError):
        await parts.videos.accept(held)


def _check_webhook(parts: Parts, tenant: str, url: str) -> None:
    if not parts.webhooks.enabled_for(tenant):
        raise RequestError(
            422,
            "webhooks_not_enabled",
            "this tenant has no webhook secret (gateway.tenants.<tenant>.webhook_secret)",
        )
    parsed = urlsplit(url)
    if len(url) > 2048 or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RequestError(
            422,
            "invalid_webhook_url",
            "Webhook-URL must be an http(s) URL of at most 2048 characters",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "body_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    schema = request_model().model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"schema": schema}, defs


def _add_schema_defs(app: FastAPI, defs: dict[str, Any]) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in defs.items():
                schemas.setdefault(name, json.loads(json.dumps(schema)))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
