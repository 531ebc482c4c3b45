"""The HTTP face of a Service: FastAPI routes on uvicorn (uvloop + httptools).

The predict path is kept light: the body is parsed with orjson and validated by a Schema built
once (no pydantic model per request), and answers are JSON bytes encoded by orjson. Bodies and
errors are documented in OpenAPI (``/docs``) from the bundle's own feature schema.

Under load, FastAPI's routing and dependency machinery costs about as much as the rest of the
request, so ``POST /predict`` takes a fast lane: an ASGI middleware hands it straight to the same
handler the route declares (the route stays, for the OpenAPI document). A batch is bounded
(``max_batch`` instances, else 413 naming the limit) and predicted in chunks of
``PREDICT_CHUNK``, yielding to the event loop between chunks, so single predictions never wait
behind a big batch; learning and rollback wait for a batch in progress, so a batch is answered
by one version.

Several processes (``workers``) can serve the state-free predict path only (``read_only``):
each would otherwise learn on its own copy of the model and write checkpoints over the others'.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException

from workbench import __version__
from workbench.errors import ConfigError
from workbench.export.service import Refusal, Service, invalid

#: bodies larger than this are refused with 413 (a batch of ~5,000 small records fits)
MAX_BODY_BYTES = 1 << 20
#: batches with more instances than this are refused with 413
MAX_BATCH = 1000
#: instances predicted between two yields to the event loop (~1-3 ms of work)
PREDICT_CHUNK = 64
TOKEN_ENV = "WORKBENCH_TOKEN"
_JSON = "application/json"
_TOO_DEEP = "JSON nested too deeply: a body is an object of records whose values are numbers, text or booleans"
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Prometheus series of one service (its own registry: two apps in a process never mix)."""

    def __init__(self, service: Service):
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "workbench_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "workbench_request_latency_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.predictions = Counter("workbench_predictions", "Predictions made", registry=r)
        self.updates = Counter("workbench_updates", "Updates learned from feedback", registry=r)
        self.drift = Counter(
            "workbench_drift_events", "Drift detector alarms", ["detector", "kind"], registry=r
        )
        self.checkpoints = Counter(
            "workbench_checkpoints", "Checkpoints written, by reason", ["reason"], registry=r
        )
        Gauge("workbench_model_version", "Version of the model answering", registry=r).set_function(
            lambda: service.version
        )
        Gauge(
            "workbench_lost_updates",
            "Updates lost at the last restart (applied after the last checkpoint)",
            registry=r,
        ).set_function(lambda: service.lost_updates)


def create_app(
    service: Service,
    token: str | None = None,
    protect_predict: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_batch: int = MAX_BATCH,
    read_only: bool = False,
) -> FastAPI:
    """The app serving ``service``; ``token`` (default: $WORKBENCH_TOKEN) guards learn and
    rollback, and predict too with ``protect_predict``; ``read_only`` refuses learn and
    rollback."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    m = service.bundle.manifest
    # /docs: Swagger UI's files served by the app itself, not a CDN (no /redoc: ReDoc's page
    # fetches its logo from one).
    app = FastAPIOffline(
        redoc_url=None,
        title=f"workbench: {m['learner']} of run {m['run_id']}",
        version=__version__,
        description=f"{m['model']} exported from run {m['run_id']} ({m['run_name']}), "
        f"version {m['version']}. Send `Authorization: Bearer <token>` to /learn and /rollback.",
    )
    metrics = Metrics(service)
    # one thread: checkpoints land in the order they were taken
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-checkpoint")
    app.state.service, app.state.metrics = service, metrics
    # held by a batch prediction across its chunks, and by whatever changes the model
    model_lock = asyncio.Lock()

    def shutdown() -> None:
        """A stop asked for (SIGTERM, Ctrl-C) loses nothing: updates since the last
        checkpoint go into a 'final' one."""
        if service.unsaved():
            writer.submit(service.persist, service.snapshot("final")).result()
        writer.shutdown(wait=True)

    app.router.on_shutdown.append(shutdown)

    def authorize(request: Request) -> None:
        if token is None:
            raise Refusal(
                403,
                "this endpoint needs a token, and the service was started without one: "
                f"start it with --token or ${TOKEN_ENV}",
            )
        sent = request.headers.get("authorization", "")
        if not sent.startswith("Bearer "):
            raise Refusal(
                401,
                "missing token: send the header 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(sent[7:].encode(), token.encode()):
            raise Refusal(403, "wrong token")

    async def body_of(request: Request, empty: dict | None = None) -> dict:
        """The JSON object a request carries (``empty`` stands for no body, where allowed)."""
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            raise Refusal(400, f"Content-Length {length!r} is not a number of bytes")
        if length is not None and int(length) > max_body_bytes:
            raise Refusal(
                413, f"body of {int(length):,} bytes is over the limit of {max_body_bytes:,}"
            )
        if length is not None:
            raw = await request.body()
        else:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    raise Refusal(413, f"body is over the limit of {max_body_bytes:,} bytes")
                chunks.append(chunk)
            raw = b"".join(chunks)
        if empty is not None and not raw.strip():
            return empty
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc):  # orjson stops at 1,024 levels
                raise Refusal(422, [invalid(["body"], _TOO_DEEP, "json_invalid")]) from None
            try:  # the stdlib reads NaN and Infinity, so the schema can name the field holding one
                data = json.loads(raw)
            except RecursionError:
                raise Refusal(422, [invalid(["body"], _TOO_DEEP, "json_invalid")]) from None
            except ValueError as exc:
                raise Refusal(
                    422, [invalid(["body"], f"invalid JSON: {exc}", "json_invalid")]
                ) from None
        if type(data) is not dict:
            raise Refusal(422, [invalid(["body"], "expected a JSON object", "dict_type")])
        return data

    async def persist(snapshot: tuple[dict, bytes], reason: str) -> None:
        await asyncio.get_running_loop().run_in_executor(writer, service.persist, snapshot)
        metrics.checkpoints.labels(reason).inc()

    def endpoint(name: str, work: Callable[[Request], Awaitable[Any]], guarded: bool) -> Callable:
        latency, ok = metrics.latency.labels(name), metrics.requests.labels(name, "200")

        async def handler(request: Request) -> Response:
            started = perf_counter()
            try:
                if guarded:
                    authorize(request)
                answer = await work(request)
                content = answer if type(answer) is bytes else orjson.dumps(answer, option=_ORJSON)
            except Refusal as exc:
                metrics.requests.labels(name, str(exc.status)).inc()
                latency.observe(perf_counter() - started)
                return Response(
                    orjson.dumps({"detail": exc.detail}), exc.status, exc.headers, _JSON
                )
            except Exception as exc:  # a bug, or the model failing: counted, logged, answered
                metrics.requests.labels(name, "500").inc()
                latency.observe(perf_counter() - started)
                traceback.print_exc(file=sys.stderr)
                detail = f"internal error ({type(exc).__name__}); the server's log has the traceback"
                return Response(orjson.dumps({"detail": detail}), 500, None, _JSON)
            ok.inc()
            latency.observe(perf_counter() - started)
            return Response(content, 200, None, _JSON)

        handler.__name__ = name
        return handler

    async def predict(request: Request) -> dict:
        body = await body_of(request)
        instances = body.get("instances")
        if type(instances) is list and len(instances) > max_batch:
            raise Refusal(
                413,
                f"batch of {len(instances):,} instances is over the limit of {max_batch:,} "
                "per request (--max-batch): split it",
            )
        if type(instances) is not list or len(instances) <= PREDICT_CHUNK:
            answer = service.predict(body)
        else:
            async with model_lock:
                answer = await _predict_chunked(service, body, instances)
        metrics.predictions.inc(len(answer.get("predictions", ())) or 1)
        return answer

    def refuse_if_read_only() -> None:
        if read_only:
            raise Refusal(
                403,
                "this server is read-only (--read-only, as every server with --workers > 1 is): "
                "send feedback and rollbacks to a single-process server",
            )

    async def learn(request: Request) -> dict:
        refuse_if_read_only()
        body = await body_of(request)
        async with model_lock:
            answer, snapshot = service.learn(body)
        metrics.updates.inc(answer["learned"])
        for event in answer["drift"]:
            metrics.drift.labels(event["detector"], event["kind"]).inc()
        if snapshot is not None:
            await persist(snapshot, "scheduled")
        return answer

    async def rollback(request: Request) -> dict:
        refuse_if_read_only()
        body = await body_of(request, empty={})
        async with model_lock:
            answer, snapshot = service.rollback(body)
        await persist(snapshot, "rollback")
        return answer

    async def health(request: Request) -> dict:
        report = service.health()
        if report["status"] != "ok":
            raise Refusal(503, report)
        return report

    async def version(request: Request) -> dict:
        return service.info()

    async def versions(request: Request) -> dict:
        return {"current": service.version, "versions": service.versions}

    async def prometheus(request: Request) -> bytes:
        return generate_latest(metrics.registry)

    bodies = _openapi_bodies(service)
    routes = [
        ("/predict", "POST", predict, protect_predict, "Predict one record or a batch"),
        ("/learn", "POST", learn, True, "Learn from labelled feedback (needs the token)"),
        ("/rollback", "POST", rollback, True, "Serve an earlier version again (needs the token)"),
        ("/health", "GET", health, False, "Liveness, current version, updates lost at start"),
        ("/version", "GET", version, False, "The model served and where it came from"),
        ("/versions", "GET", versions, False, "Every version: the bundle's and each checkpoint"),
    ]
    handlers = {}
    for path, method, work, guarded, summary in routes:
        handlers[path] = endpoint(path.strip("/"), work, guarded)
        app.add_api_route(
            path,
            handlers[path],
            methods=[method],
            summary=summary,
            openapi_extra=bodies.get(path),
            response_class=Response,
        )
    app.add_middleware(_FastLane, path="/predict", method="POST", handler=handlers["/predict"])
    metrics_route = endpoint("metrics", prometheus, False)

    async def not_routed(request: Request, exc: HTTPException) -> Response:
        """An unknown path or method: answered as JSON, and counted like every answer."""
        metrics.requests.labels("other", str(exc.status_code)).inc()
        return Response(orjson.dumps({"detail": exc.detail}), exc.status_code, exc.headers, _JSON)

    app.add_exception_handler(HTTPException, not_routed)

    async def metrics_text(request: Request) -> Response:
        response = await metrics_route(request)
        response.headers["content-type"] = CONTENT_TYPE_LATEST
        return response

    app.add_api_route(
        "/metrics",
        metrics_text,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
    )
    return app


async def _predict_chunked(service: Service, body: dict, instances: list) -> dict:
    """``service.predict(body)``, PREDICT_CHUNK instances at a time, yielding in between."""
    parts = []
    for start in range(0, len(instances), PREDICT_CHUNK):
        try:
            chunk = instances[start : start + PREDICT_CHUNK]
            parts.append(service.predict({**body, "instances": chunk}))
        except Refusal as exc:  # an error names the instance by its place in the whole batch
            if exc.status == 422 and type(exc.detail) is list:
                for error in exc.detail:
                    loc = error["loc"]
                    if loc[:2] == ["body", "instances"] and len(loc) > 2 and type(loc[2]) is int:
                        loc[2] += start
            raise
        await asyncio.sleep(0)
    answer = parts[0]
    for part in parts[1:]:
        for key, value in part.items():
            if type(value) is list:
                answer[key].extend(value)
    return answer


class _FastLane:
    """ASGI middleware: requests for one route go straight to its handler, past the router."""

    def __init__(self, app, path: str, method: str, handler: Callable[..., Awaitable[Response]]):
        self.app, self.path, self.method, self.handler = app, path, method, handler

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] == "http"  # not "lifespan": start-up and shutdown go to the app
            and scope["path"] == self.path
            and scope["method"] == self.method
        ):
            response = await self.handler(Request(scope, receive))
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _openapi_bodies(service: Service) -> dict[str, dict]:
    """Request bodies in OpenAPI, written from the bundle's schema (the routes parse by hand)."""
    kinds = {
        "number": {"type": "number"},
        "string": {"type": "string"},
        "boolean": {"type": "boolean"},
    }
    props = {f["name"]: kinds.get(f["type"], {}) for f in service.bundle.features}
    required = [f["name"] for f in service.bundle.features if not f["nullable"]]
    features = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    label = dict(kinds.get(service.bundle.target["type"], {}))
    if service.bundle.target.get("classes") is not None:
        label["enum"] = service.bundle.target["classes"]

    def body(*options: dict) -> dict:
        return {
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"oneOf": list(options)}}},
            }
        }

    return {
        "/predict": body(
            {"type": "object", "properties": {"features": features}, "required": ["features"]},
            {
                "type": "object",
                "properties": {"instances": {"type": "array", "items": features}},
                "required": ["instances"],
            },
        ),
        "/learn": body(
            {
                "type": "object",
                "properties": {"features": features, "label": label},
                "required": ["features", "label"],
            },
            {
                "type": "object",
                "properties": {
                    "instances": {"type": "array", "items": features},
                    "labels": {"type": "array", "items": label},
                },
                "required": ["instances", "labels"],
            },
        ),
        "/rollback": {
            "requestBody": {
                "required": False,
                "content": {
                    _JSON: {
                        "schema": {"type": "object", "properties": {"version": {"type": "integer"}}}
                    }
                },
            }
        },
    }


#: the settings of ``serve`` handed to worker processes (they import the app by name)
_SETTINGS_ENV = "WORKBENCH_SERVE_SETTINGS"


def serve(
    bundle: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    state_dir: str | Path | None = None,
    checkpoint_every: int = 1000,
    max_body_bytes: int = MAX_BODY_BYTES,
    protect_predict: bool = False,
    trust_unsigned: bool = False,
    keep: int = 10,
    max_batch: int = MAX_BATCH,
    read_only: bool = False,
    workers: int = 1,
) -> None:
    """Serve ``bundle`` until interrupted: one process (the model's state lives in it), or
    ``workers`` processes sharing the port (uvicorn's workers), which must be ``read_only``."""
    import uvicorn

    if workers < 1 or max_batch < 1:
        raise ConfigError("--workers" if workers < 1 else "--max-batch", "must be 1 or more")
    if workers > 1 and not read_only:
        raise ConfigError(
            "--workers",
            f"{workers} processes would each learn on their own copy of the model and write "
            "checkpoints over each other's; add --read-only to serve predictions only, and send "
            "feedback to a single-process server",
        )
    settings = {
        "bundle": str(bundle),
        "token": token,
        "state_dir": None if state_dir is None else str(state_dir),
        "checkpoint_every": checkpoint_every,
        "trust_unsigned": trust_unsigned,
        "keep": keep,
        "max_body_bytes": max_body_bytes,
        "protect_predict": protect_predict,
        "max_batch": max_batch,
        "read_only": read_only,
    }
    service, app = _app(settings)  # in the parent too: a bad bundle fails before any fork
    m = service.bundle.manifest
    mode = (
        f"{workers} processes, read-only; " if workers > 1 else "read-only; " if read_only else ""
    )
    print(f"workbench serve: {service.message}", flush=True)
    print(
        f"workbench serve: {m['learner']} ({m['model']}) of run {m['run_id']} "
        f"on http://{host}:{port} ({mode}docs: /docs)",
        flush=True,
    )
    options = dict(
        host=host, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )
    try:
        if workers > 1:
            os.environ[_SETTINGS_ENV] = json.dumps(settings)
            # A worker answers uvicorn's health pings only once it has imported the app (~3-10 s
            # here): its default 5 s restarts them before they ever serve.
            uvicorn.run(
                f"{__name__}:worker_app",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=120,
                **options,
            )
        else:
            uvicorn.run(app, **options)
    finally:
        service.close()


def _app(settings: dict[str, Any]) -> tuple[Service, FastAPI]:
    service = Service(
        settings["bundle"],
        settings["state_dir"],
        settings["checkpoint_every"],
        settings["trust_unsigned"],
        settings["keep"],
        settings["read_only"],
    )
    app = create_app(
        service,
        settings["token"],
        settings["protect_predict"],
        settings["max_body_bytes"],
        settings["max_batch"],
        settings["read_only"],
    )
    # Everything loaded so far (libraries, the model) lives as long as the server: out of the
    # collector's sight, a full collection no longer pauses every request for ~50-100 ms.
    gc.freeze()
    return service, app


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve(workers=N)``, from the parent's settings."""
    return _app(json.loads(os.environ[_SETTINGS_ENV]))[1]
