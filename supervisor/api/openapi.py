"""``GET /openapi.json``: the OpenAPI 3.1 document of this API.

Schemas of bodies come from the pydantic models the handlers use (``models_json_schema``), the
operations are written out below next to :data:`routes.ROUTES`; a unit test checks that every
route of the app is documented and every documented operation is routed, and a schemathesis run
checks the answers against the schemas.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from supervisor.update.models import (
    MAX_VERSION_LENGTH,
    VERSION_PATTERN,
    RunEvent,
    RunRecord,
    StartRequest,
)
from supervisor.update.summary import Blocked, LastResult, RunningRun

from .const import UPDATE_ID_PATTERN
from .schemas import (
    AcknowledgeRequest,
    AutoApplyStatus,
    Badge,
    CancelRequest,
    ErrorEnvelope,
    Health,
    HistoryPage,
    Job,
    SnapshotList,
    StartResponse,
    UnfreezeRequest,
    VersionMarkRequest,
)

_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (RunRecord, "serialization"), (RunEvent, "serialization"), (StartRequest, "validation"),
    (StartResponse, "serialization"), (CancelRequest, "validation"),
    (ErrorEnvelope, "serialization"), (HistoryPage, "serialization"),
    (LastResult, "serialization"), (RunningRun, "serialization"), (Badge, "serialization"),
    (Blocked, "serialization"), (AcknowledgeRequest, "validation"),
    (Job, "serialization"), (AutoApplyStatus, "serialization"),
    (VersionMarkRequest, "validation"), (UnfreezeRequest, "validation"),
    (SnapshotList, "serialization"), (Health, "serialization"),
]  # fmt: skip

_ERRORS = {
    400: "Invalid input: malformed JSON, wrong type, unknown field or query parameter",
    401: "Missing or unknown bearer token",
    403: "The read token on an admin endpoint (or a disabled feature)",
    404: "Unknown update, snapshot or job",
    409: "Conflicts with a running update or job",
    413: "Body larger than SUPERVISOR_MAX_BODY_BYTES",
    415: "Body is not application/json",
    422: "The policy file or labels have problems (all listed); the policy in force is kept",
    500: "Unexpected error (details only in the sidecar log)",
    502: "The Docker engine or registry failed",
    503: "The Docker engine or registry is unreachable",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...],
    *,
    public: bool = False,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {str(code): answer for code, answer in ok.items()}
    codes = set(errors) | {400, 500} | (set() if public else {401})
    if body is not None:
        codes |= {400, 413, 415}
    for code in sorted(codes):
        answer = _json(_ref("ErrorEnvelope"), _ERRORS[code])
        if code == 401:
            answer["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses[str(code)] = answer
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if public:
        operation["security"] = []
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1, "maxLength": 128}
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}  # fmt: skip


_UPDATE_ID = _query(
    "update_id",
    {"type": "string", "maxLength": 128, "pattern": f"^({UPDATE_ID_PATTERN[1:-1]})?$"},
    "A run id; without it (or empty), the current run or else the last one",
)
_EMPTY = {"type": "object", "maxProperties": 0}
_OBJECT = {"type": "object"}
_SSE_DESCRIPTION = (
    "Server-Sent Events. Each event: `id:` (increasing per run, the same across a restart of "
    "the sidecar), `event:` (phase, progress, log or result) and `data:` JSON repeating "
    '`event`, e.g. `{"event":"phase","state":"pull","message":"Pulling images"}`; progress '
    "events carry `progress` 0-100 (and `bytes_done`/`bytes_total` while pulling). The run's "
    "history comes first, then live events; `Last-Event-ID` resumes strictly after that id "
    "(also after a restart); `: keep-alive` comments while idle; the stream ends after the "
    "single `result` event, and a `Last-Event-ID` at or past it gets the `result` again. "
    "The data of each kind is the SSEData schema."
)
_END_STATES = ["completed", "failed", "cancelled", "rolled_back", "needs_intervention"]
_SSE_KINDS: dict[str, dict[str, Any]] = {
    "SSEPhaseData": {
        "required": ["event", "state", "message"],
        "properties": {
            "event": {"const": "phase"},
            "state": {"type": "string", "description": "the stage entered, or the end state"},
            "message": {"type": "string", "description": "human text of the stage"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        },
    },
    "SSEProgressData": {
        "required": ["event", "state", "progress"],
        "properties": {
            "event": {"const": "progress"},
            "state": {"type": "string", "description": "the stage"},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "image": {"type": "string", "description": "while pulling: the image"},
            "bytes_done": {"type": "integer", "minimum": 0},
            "bytes_total": {"type": "integer", "minimum": 0},
        },
    },
    "SSELogData": {
        "required": ["event", "message"],
        "properties": {
            "event": {"const": "log"},
            "state": {"type": "string", "description": "the stage"},
            "message": {"type": "string"},
        },
    },
    "SSEResultData": {
        "required": ["event", "state", "update_id", "from_version", "target_version", "error"],
        "properties": {
            "event": {"const": "result"},
            "state": {"enum": _END_STATES},
            "message": {"type": "string"},
            "update_id": {"type": "string"},
            "from_version": {"type": ["string", "null"]},
            "target_version": {"type": ["string", "null"]},
            "error": {"anyOf": [{"type": "null"}, {
                "type": "object", "required": ["error_key", "message", "stage"],
                "properties": {"error_key": {"type": "string"}, "message": {"type": "string"},
                               "stage": {"type": "string"}}}]},
        },
    },
}  # fmt: skip
_SSE_DATA = {
    "description": "The JSON in an event's `data:` line, by `event`",
    "oneOf": [_ref(name) for name in _SSE_KINDS],
}
_SSE_EVENT = {
    "type": "object",
    "description": "One Server-Sent Event as parsed from the stream",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {"enum": ["phase", "progress", "log", "result"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": _ref("SSEData"),
        },
        "retry": {"type": "integer"},
    },
}
_NULLABLE_STRING = {"type": ["string", "null"]}
_TAG_DIGEST = {
    "type": "object",
    "required": ["tag", "digest"],
    "properties": {"tag": _NULLABLE_STRING, "digest": _NULLABLE_STRING},
}
_SERVICE_STATE = {
    "type": "string",
    "description": "missing (no container: e.g. being recreated), or the engine's state: "
    "running, restarting, created, exited, paused, dead",
}
_CHECK_FAILURE = {
    "type": "object",
    "required": ["error_key", "message", "at"],
    "properties": {"error_key": {"type": "string"}, "message": {"type": "string"},
                   "at": {"type": "string", "format": "date-time"}},
}  # fmt: skip
_LATEST = {
    "type": "object",
    "required": ["version", "channel", "services", "checked_at"],
    "properties": {
        "version": {"type": "string"},
        "channel": {"type": "string"},
        "services": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "per service: the release's image, name:tag@digest"},
        "checked_at": {"type": "string", "format": "date-time"},
    },
}  # fmt: skip
_VERSION_INFO = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "current", "latest", "update_available", "services", "check",
                 "last_result", "running", "blocked", "signatures", "auto_apply"],
    "properties": {
        "auto_apply": {"description": "unattended updates: mode, freeze, bad versions (null "
                       "when not configured)",
                       "anyOf": [_ref("AutoApplyStatus"), {"type": "null"}]},
        "version": {**_NULLABLE_STRING, "description": "the version the stack runs"},
        "current": {
            "type": "object",
            "description": "per managed service: tag and digest of what runs now",
            "additionalProperties": {
                "type": "object",
                "required": ["tag", "digest", "image", "state", "health"],
                "properties": {"tag": _NULLABLE_STRING, "digest": _NULLABLE_STRING,
                               "image": _NULLABLE_STRING, "state": _SERVICE_STATE,
                               "health": _NULLABLE_STRING},
            },
        },
        "latest": {"description": "the newest release of the last successful check (null "
                   "before one)", "anyOf": [_ref("LatestRelease"), {"type": "null"}]},
        "update_available": {"type": "boolean",
                             "description": "any service is behind `latest`, now"},
        "services": {
            "type": "object",
            "description": "per managed service, as a UI shows a component",
            "additionalProperties": {
                "type": "object",
                "required": ["current", "latest", "update_available", "last_checked", "state"],
                "properties": {
                    "current": _TAG_DIGEST,
                    "latest": {"anyOf": [_TAG_DIGEST, {"type": "null"}]},
                    "update_available": {"type": "boolean"},
                    "last_checked": {"anyOf": [{"type": "string", "format": "date-time"},
                                               {"type": "null"}]},
                    "state": _SERVICE_STATE,
                },
            },
        },
        "check": {
            "type": "object",
            "description": "the release check: last success, and the last attempt's error",
            "required": ["checked_at", "error"],
            "properties": {
                "checked_at": {"anyOf": [{"type": "string", "format": "date-time"},
                                         {"type": "null"}]},
                "error": {"anyOf": [_CHECK_FAILURE, {"type": "null"}]},
            },
        },
        "last_result": {"anyOf": [_ref("LastResult"), {"type": "null"}]},
        "running": {"anyOf": [_ref("RunningRun"), {"type": "null"}]},
        "blocked": {"anyOf": [_ref("Blocked"), {"type": "null"}]},
        "signatures": {"type": "array", "items": {"type": "object"},
                       "description": "the signature verdicts of the last run"},
    },
}  # fmt: skip
_CHECK_ANSWER = {
    "allOf": [_ref("LatestRelease")],
    "type": "object",
    "required": ["current_version", "update_available"],
    "properties": {"current_version": _NULLABLE_STRING, "update_available": {"type": "boolean"}},
}


def _operations() -> dict[str, dict[str, Any]]:
    run = _json(_ref("RunRecord"), "The run record")
    job = _json(_ref("Job"), "The job, running in the background")
    return {
        "/admin/update/start": {"post": _op(
            "Start an update (CanopyOS); without target_version: the latest in the channel",
            {202: _json(_ref("StartResponse"), "Accepted: the run is journaled and running")
             | {"headers": {"Location": {"schema": {"type": "string"}}}}},
            (403, 409), body=_ref("StartRequest"))},
        "/admin/update/status": {"get": _op(
            "State, progress, phase, log tail of a run (CanopyOS)", {200: run}, (404,),
            params=[_UPDATE_ID])},
        "/admin/update/stream": {"get": _op(
            "Live progress of a run as Server-Sent Events (CanopyOS)",
            {200: {"description": _SSE_DESCRIPTION,
                   "content": {"text/event-stream": {"schema": _ref("SSEEvent")}}}},
            (400, 404), params=[_UPDATE_ID, {
                "name": "Last-Event-ID", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": "^([0-9]{1,18})?$"},
                "description": "Resume strictly after this event id"}])},
        "/admin/update/cancel": {"post": _op(
            "Cancel a run before it stops services (CanopyOS); 409 from `stop` on",
            {202: _json(_ref("RunRecord"), "Cancel accepted; the run ends `cancelled`")},
            (403, 404, 409), body=_ref("CancelRequest"))},
        "/admin/update/acknowledge": {"post": _op(
            "Acknowledge a run that ended `needs_intervention`: starts are allowed again",
            {200: _json(_ref("RunRecord"), "The run, with `acknowledged` (who, when, note)")},
            (400, 403, 404, 409), body=_ref("AcknowledgeRequest"))},
        "/admin/version": {"get": _op(
            "Current images per service, latest release, last result (CanopyOS)",
            {200: _json(_ref("VersionInfo"), "Versions")}, (502, 503))},
        "/admin/update/check": {"post": _op(
            "Look for a new release now",
            {200: _json(_ref("CheckAnswer"), "The latest release, compared with what runs")},
            (403, 502, 503), body=_EMPTY)},
        "/admin/update/plan": {"get": _op(
            "Dry run: what an update would change and what would block it",
            {200: _json(_OBJECT, "The plan")}, (400, 502, 503), params=[
                _query("target_version", {"type": "string", "maxLength": MAX_VERSION_LENGTH,
                                          "pattern": f"^$|{VERSION_PATTERN}"},
                       "Version to plan for; empty or absent: the latest"),
                _query("force", {"type": "string", "enum": ["true", "false"]},
                       "Plan as if forced (downgrade, same version)")])},
        "/admin/update/history": {"get": _op(
            "Finished runs, newest first", {200: _json(_ref("HistoryPage"), "History")},
            (400,), params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                                   "At most this many runs (default 50)")])},
        "/admin/snapshots": {
            "get": _op("Complete snapshots, newest first",
                       {200: _json(_ref("SnapshotList"), "Manifests")}, ()),
            "post": _op("Take a manual snapshot (a job)", {202: job}, (403, 409),
                        body=_EMPTY)},
        "/admin/snapshots/{snapshot_id}": {"get": _op(
            "One snapshot's manifest", {200: _json(_OBJECT, "The manifest")}, (400, 404),
            params=[_path("snapshot_id", "The snapshot id")])},
        "/admin/snapshots/{snapshot_id}/restore": {"post": _op(
            "Restore a snapshot (a job); 403 restore_disabled unless "
            "SUPERVISOR_RESTORE_OVER_HTTP is set: use `supervisor restore` instead",
            {202: job}, (403, 404, 409), body=_EMPTY,
            params=[_path("snapshot_id", "The snapshot id")])},
        "/admin/jobs/{job_id}": {"get": _op(
            "A snapshot or restore job", {200: _json(_ref("Job"), "The job")}, (404,),
            params=[_path("job_id", "The job id from the 202 answer")])},
        "/admin/policy": {"get": _op(
            "Unattended updates: the effective policy (each value with its source), the "
            "freeze, version marks and the periodic loop's recent decisions with reasons",
            {200: _json(_OBJECT, "The policy view")}, (400, 404), params=[
                _query("decisions", {"type": "integer", "minimum": 1, "maximum": 200},
                       "At most this many decisions, newest first (default 20)")])},
        "/admin/policy/versions": {"post": _op(
            "Skip or snooze a version for auto-apply, or clear its mark (also `bad`)",
            {200: _json(_OBJECT, "The version and its mark (null after clear)")},
            (403, 404), body=_ref("VersionMarkRequest"))},
        "/admin/policy/unfreeze": {"post": _op(
            "Lift the self-freeze of auto-apply (after a bad automatic run)",
            {200: _json(_OBJECT, "The freeze that was lifted")}, (403, 404, 409),
            body=_ref("UnfreezeRequest"))},
        "/admin/policy/reload": {"post": _op(
            "Re-read the policy file and service labels (as SIGHUP); 422 keeps the old policy",
            {200: _json(_OBJECT, "The effective policy and sources")}, (403, 404, 422),
            body=_EMPTY)},
        "/admin/badge.json": {"get": _op(
            "The last result for a UI badge", {200: _json(_ref("Badge"), "Badge")}, ())},
        "/admin/badge.svg": {"get": _op(
            "The last result as an SVG badge",
            {200: {"description": "SVG",
                   "content": {"image/svg+xml": {"schema": {"type": "string"}}}}}, ())},
        "/metrics": {"get": _op(
            "Prometheus metrics: runs by result, stage durations, last success, snapshot sizes",
            {200: {"description": "Prometheus text format",
                   "content": {"text/plain": {"schema": {"type": "string"}}}}}, ())},
        "/healthz": {"get": _op(
            "Liveness of the sidecar process (no token)",
            {200: _json(_ref("Health"), "Serving")}, (), public=True)},
        "/openapi.json": {"get": _op(
            "This document", {200: _json(_OBJECT, "OpenAPI 3.1")}, (), public=True)},
    }  # fmt: skip


@cache
def document() -> dict[str, Any]:
    refs, top = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
    assert all(ref["$ref"].rsplit("/", 1)[1] in top["$defs"] for ref in refs.values())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stack Supervisor",
            "version": "1",
            "description": "Safe updates of a Docker Compose stack. Errors always have the "
            "ErrorEnvelope shape. Read token: GET endpoints; admin token: everything.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _operations(),
        "components": {
            "schemas": {
                **top["$defs"],
                "SSEEvent": _SSE_EVENT,
                "SSEData": _SSE_DATA,
                **{name: {"type": "object", **kind} for name, kind in _SSE_KINDS.items()},
                "VersionInfo": _VERSION_INFO,
                "LatestRelease": _LATEST,
                "CheckAnswer": _CHECK_ANSWER,
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
