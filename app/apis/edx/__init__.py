"""The EDX workspace lock API (seed 000): CKAN-style actions under ``/api/3/action``.

``lock_workspace`` toggles a lockcore lock of type ``workspace`` on resource
``<workspace id>`` in scope ``edx:workspace:<workspace id>`` (no expiry unless
``LOCKCORE_EDX_TTL`` is set); ``check_workspace_lock`` reads it. While a workspace is
locked, the features marked restricted in ``features.yaml`` are refused to everyone but
the locker, through ``workspace_action_check`` and the guarded actions (``create_folder``,
``resource_delete``, ...), which check and answer but perform nothing themselves.

Envelope: ``{"help": "<base>/api/3/action/help_show?name=...", "success": true, "result":
...}``; errors ``{"help", "success": false, "error": {"__type", "message", <field>: [...]}}``
with CKAN's statuses: 403 Authorization Error, 404 Not Found Error, 409 Validation Error,
400 for malformed JSON, a GET on an action, or an unknown action.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from marshmallow import Schema, fields, validate

from lockcore import Lock, LockConflict, LockNotFound, LockNotOwned

from ... import idempotency
from ...auth import bearer, held_by_other, user_for_key
from ...errors import ApiError
from ...identity import User, label
from ...limits import check_name, check_notes
from ...openapi import route
from ...services import services
from ...units import ApiUnit, until_unlocked
from .catalog import CATALOG, Workspace, read_workspace
from .features import GUARDED_ACTIONS, Feature, features, is_restricted, load_features

bp = Blueprint("edx", __name__, url_prefix="/api/3/action")
TAG = "EDX workspace locks"
LOCK_TYPE = "workspace"
HELP_NAME = "workspace_lock_api"
USER_AGENT = "EDX-USER"
KEY_HEADERS = ("X-CKAN-API-Key", "EDX-API-Key", "Authorization")

AUTHZ, NOT_FOUND, VALIDATION, BAD_REQUEST = (
    "Authorization Error",
    "Not Found Error",
    "Validation Error",
    "Bad Request",
)
STATUS = {AUTHZ: 403, NOT_FOUND: 404, VALIDATION: 409, BAD_REQUEST: 400}

LOCKED_MESSAGE = (
    "This workspace was locked by {label} and you cannot perform this action. "
    "It must be unlocked by the user who locked it."
)

# -- the envelope -------------------------------------------------------------------------


def help_url(name: str) -> str:
    return f"{request.host_url.rstrip('/')}/api/3/action/help_show?name={name}"


def help_name() -> str:
    action = request.path.rsplit("/", 1)[-1]
    return action if action in GUARDED_ACTIONS else HELP_NAME


def envelope(exc: ApiError) -> tuple[Any, int]:
    kind = (
        exc.kind
        if exc.kind in STATUS
        else {403: AUTHZ, 404: NOT_FOUND, 409: VALIDATION}.get(exc.status, exc.kind or BAD_REQUEST)
    )
    error: dict[str, Any] = {"__type": kind, "message": exc.message}
    if isinstance(exc.details, dict):
        error.update(exc.details)
    status = STATUS.get(kind, exc.status)
    if exc.status >= 500:
        status = exc.status
    return jsonify({"help": help_url(help_name()), "success": False, "error": error}), status


def error(kind: str, message: str, fields_: dict[str, list[str]] | None = None) -> ApiError:
    return ApiError(STATUS[kind], message, kind=kind, details=fields_)


def ok(result: Any) -> Any:
    return jsonify({"help": help_url(help_name()), "success": True, "result": result})


HTTP_MESSAGES = {
    404: "Bad request - Action name not known",
    405: "Bad request - Actions are called with POST; JSON body or form data",
}


def _http_envelope(exc: ApiError) -> tuple[Any, int]:
    # No such action (404 from routing) or a GET on one (405): CKAN answers 400. Other
    # methods (PUT, TRACE...) CKAN's router refuses: 405, with Allow.
    if exc.kind in STATUS:
        pass  # one of ours
    elif exc.status == 404:
        name = request.path.rsplit("/", 1)[-1]
        exc = error(BAD_REQUEST, f"Bad request - Action name not known: {name}")
    elif exc.status == 405 and request.method == "GET":
        exc = error(BAD_REQUEST, HTTP_MESSAGES[405])
    return envelope(exc)


SECURITY: list[dict[str, list[str]]] = [{h: []} for h in KEY_HEADERS]

# -- schemas (for the OpenAPI document) ---------------------------------------------------


class LockWorkspaceSchema(Schema):
    workspace_id = fields.String(required=True, metadata={"description": "id or name"})
    notes = fields.String(metadata={"description": "a note shown by check_workspace_lock"})


class WorkspaceIdSchema(Schema):
    workspace_id = fields.String(required=True)


class ActionCheckSchema(Schema):
    workspace_id = fields.String(required=True)
    action = fields.String(required=True, metadata={"description": "a feature key"})


class EnvelopeSchema(Schema):
    help = fields.String(metadata={"description": "the action's help_show URL"})
    success = fields.Boolean(validate=validate.OneOf([True]))


class LockResultSchema(Schema):
    is_locked = fields.Boolean(required=True, metadata={"description": "after the toggle"})
    notes = fields.String(metadata={"description": "echoed when the call locks with notes"})


class CheckResultSchema(Schema):
    is_locked = fields.Boolean(required=True)
    locked_by = fields.String(metadata={"description": "when locked: Full Name (email)"})
    date_locked = fields.String(metadata={"description": "when locked: YYYY-MM-DD HH:MM, UTC"})
    notes = fields.String(metadata={"description": "when locked"})


class ActionCheckResultSchema(Schema):
    allowed = fields.Boolean(required=True, validate=validate.OneOf([True]))
    action = fields.String(required=True)
    feature = fields.String(required=True, metadata={"description": "the feature's label"})
    restricted = fields.Boolean(required=True, metadata={"description": "while locked"})
    is_locked = fields.Boolean(required=True)


class GuardedResultSchema(Schema):
    allowed = fields.Boolean(required=True, validate=validate.OneOf([True]))
    action = fields.String(required=True)
    feature = fields.String(required=True, metadata={"description": "the feature's label"})
    workspace_id = fields.String(required=True)


class LockEnvelopeSchema(EnvelopeSchema):
    result = fields.Nested(LockResultSchema)


class CheckEnvelopeSchema(EnvelopeSchema):
    result = fields.Nested(CheckResultSchema)


class ActionCheckEnvelopeSchema(EnvelopeSchema):
    result = fields.Nested(ActionCheckResultSchema)


class GuardedEnvelopeSchema(EnvelopeSchema):
    result = fields.Nested(GuardedResultSchema)


def _messages(name: str) -> fields.List[str]:
    return fields.List(
        fields.String(), metadata={"description": f"Validation Error of {name}: its messages"}
    )


class ErrorSchema(Schema):
    """CKAN's error: its kind, a message and, for a Validation Error of a parameter, that
    parameter's messages."""

    type_ = fields.String(
        data_key="__type",
        required=True,
        metadata={
            "description": "Authorization Error (403), Not Found Error (404), Validation Error"
            " (409), Bad Request (400); else the HTTP error's name (Service Unavailable...)"
        },
    )
    message = fields.String(required=True)
    workspace_id = _messages("workspace_id")
    action = _messages("action")
    notes = _messages("notes")


class ErrorEnvelopeSchema(Schema):
    help = fields.String(metadata={"description": "the action's help_show URL"})
    success = fields.Boolean(validate=validate.OneOf([False]))
    error = fields.Nested(ErrorSchema, required=True)


# -- translation --------------------------------------------------------------------------


def scope_of(workspace: Workspace) -> str:
    return f"edx:workspace:{workspace.id}"


def params() -> dict[str, Any]:
    """The action's parameters: a JSON body or form data."""
    if request.form:
        return request.form.to_dict()
    raw = request.get_data()
    if not raw.strip():
        return {}
    try:
        data = current_app.json.loads(raw)
    except ValueError as exc:
        raise error(BAD_REQUEST, f"Bad request - JSON Error: {exc}") from exc
    if not isinstance(data, dict):
        raise error(BAD_REQUEST, "Bad request - JSON Error: the body must be a JSON object")
    return data


def caller() -> User:
    if request.headers.get("User-Agent", "") != USER_AGENT:
        raise error(
            AUTHZ,
            f"Access denied: EDX API requests must send the header 'User-Agent: {USER_AGENT}'",
        )
    for header in KEY_HEADERS:
        value = request.headers.get(header, "").strip()
        value = bearer(value) or "" if value.lower().startswith("bearer ") else value
        if value:
            user = user_for_key(value)
            if user is None:
                raise error(AUTHZ, f"Access denied: the API key in {header} is not valid")
            return user
    raise error(
        AUTHZ,
        "Access denied: an API key is required in X-CKAN-API-Key, EDX-API-Key or Authorization",
    )


def required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise error(VALIDATION, f"{name}: Missing value", {name: ["Missing value"]})
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise error(VALIDATION, f"{name}: Must be a string", {name: ["Must be a string"]})
    problem = check_name(str(value), name)
    if problem:
        raise error(VALIDATION, f"{name}: {problem}", {name: [problem]})
    return str(value)


def workspace_for(data: dict[str, Any]) -> Workspace:
    ws_id = required(data, "workspace_id")
    workspace = read_workspace(services().catalog, ws_id)
    if workspace is None:
        raise error(NOT_FOUND, f"Not found: Workspace '{ws_id}' was not found")
    return workspace


def may_see(user: User, ws: Workspace) -> None:
    if not (user.is_sysadmin or user.id in ws.admins or user.id in ws.members):
        raise error(AUTHZ, f"Access denied: {user.id} is not a member of workspace '{ws.id}'")


def current_lock(ws: Workspace) -> Lock | None:
    return services().current_lock(scope_of(ws), LOCK_TYPE)


def locker_label(lock: Lock) -> str:
    return label(lock.metadata.get("name", lock.owner), lock.metadata.get("email", ""))


def refuse_if_restricted(user: User, ws: Workspace, feature: Feature) -> Lock | None:
    lock = current_lock(ws)
    if held_by_other(lock, user) and is_restricted(feature, ws):
        raise error(VALIDATION, LOCKED_MESSAGE.format(label=locker_label(lock)))
    return lock


# -- views --------------------------------------------------------------------------------

ERRORS = {
    400: ("Bad Request: malformed JSON", ErrorEnvelopeSchema),
    403: ("Authorization Error", ErrorEnvelopeSchema),
    404: ("Not Found Error", ErrorEnvelopeSchema),
    409: ("Validation Error", ErrorEnvelopeSchema),
    503: ("Lock store unavailable", ErrorEnvelopeSchema),
}


def _document(
    name: str, summary: str, body: Any, answer: type[EnvelopeSchema], **extra: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return route(
        bp,
        f"/{name}",
        "POST",
        summary=summary,
        tag=TAG,
        security=SECURITY,
        body=body,
        body_media=("application/json", "application/x-www-form-urlencoded"),
        responses={200: ("CKAN envelope", answer), **ERRORS},
        **extra,
    )


@_document(
    "lock_workspace",
    "Lock, or unlock, a workspace (the call toggles)",
    LockWorkspaceSchema,
    LockEnvelopeSchema,
    parameters=[idempotency.PARAMETER],
)
@idempotency.idempotent
def lock_workspace() -> Any:
    user = caller()
    data = params()
    ws = workspace_for(data)
    notes = data.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise error(VALIDATION, "notes: Must be a string", {"notes": ["Must be a string"]})
    problem = check_notes(notes or "")
    if problem:
        raise error(VALIDATION, f"notes: {problem}", {"notes": [problem]})
    locks = services().locks
    lock = current_lock(ws)
    request_id = idempotency.request_id()
    if lock is not None and request_id and locks.requested(scope_of(ws), request_id) == lock.id:
        # A repeat of the call that made this lock (its first answer was lost): the
        # outcome stays "locked", the toggle does not run again.
        return ok({"is_locked": True, **({"notes": notes} if notes is not None else {})})
    if lock is None:
        if not (user.is_sysadmin or user.id in ws.admins):
            raise error(
                AUTHZ,
                f"Access denied: only a System Administrator or an administrator"
                f" of workspace '{ws.id}' can lock it",
            )
        try:
            locks.acquire(
                scope_of(ws),
                LOCK_TYPE,
                ws.id,
                user.id,
                metadata={"name": user.name, "email": user.email, "notes": notes or ""},
                request_id=request_id,
            )
        except LockConflict as exc:
            lock = exc.holder  # locked meanwhile by someone else: this call unlocks
        else:
            return ok({"is_locked": True, **({"notes": notes} if notes is not None else {})})
    assert lock is not None
    if not (user.is_sysadmin or (user.id in ws.admins and user.id == lock.owner)):
        raise error(
            AUTHZ,
            f"Access denied: only a System Administrator or the workspace "
            f"administrator who locked it ({locker_label(lock)}) can unlock "
            f"workspace '{ws.id}'",
        )
    try:
        locks.release(lock, user.id, force=user.is_sysadmin)
    except LockNotFound:
        pass  # unlocked meanwhile: the outcome is the same
    except LockNotOwned as exc:
        raise error(AUTHZ, "Access denied: the workspace was locked by someone else") from exc
    return ok({"is_locked": False})


@_document(
    "check_workspace_lock",
    "Is the workspace locked, by whom, since when",
    WorkspaceIdSchema,
    CheckEnvelopeSchema,
)
def check_workspace_lock() -> Any:
    user = caller()
    ws = workspace_for(params())
    may_see(user, ws)
    lock = current_lock(ws)
    if lock is None:
        return ok({"is_locked": False})
    locked_at = datetime.fromtimestamp(lock.acquired_at, tz=timezone.utc)
    return ok(
        {
            "is_locked": True,
            "locked_by": locker_label(lock),
            "date_locked": locked_at.strftime("%Y-%m-%d %H:%M"),
            "notes": lock.metadata.get("notes", ""),
        }
    )


@_document(
    "workspace_action_check",
    "May the caller use a feature of the workspace now",
    ActionCheckSchema,
    ActionCheckEnvelopeSchema,
)
def workspace_action_check() -> Any:
    user = caller()
    data = params()
    ws = workspace_for(data)
    action = required(data, "action")
    table, _ = features()
    feature = table.get(action)
    if feature is None:
        known = ", ".join(table)
        raise error(
            VALIDATION,
            f"action: unknown feature '{action}'; known features: {known}",
            {"action": [f"Unknown feature; known: {known}"]},
        )
    may_see(user, ws)
    lock = refuse_if_restricted(user, ws, feature)
    return ok(
        {
            "allowed": True,
            "action": feature.key,
            "feature": feature.label,
            "restricted": is_restricted(feature, ws),
            "is_locked": lock is not None,
        }
    )


def _guarded(name: str, feature_key: str) -> None:
    def view() -> Any:
        user = caller()
        ws = workspace_for(params())
        may_see(user, ws)
        feature = features()[0][feature_key]
        refuse_if_restricted(user, ws, feature)
        return ok(
            {"allowed": True, "action": name, "feature": feature.label, "workspace_id": ws.id}
        )

    view.__name__ = f"guarded_{name}"
    _document(
        name,
        f"Guarded action: refused while locked if '{feature_key}' is restricted"
        " (lockcore checks; it performs nothing)",
        WorkspaceIdSchema,
        GuardedEnvelopeSchema,
    )(view)


for _action, _key in GUARDED_ACTIONS.items():
    _guarded(_action, _key)


def setup(app: Flask) -> None:
    # A bad override file fails here, at startup, not on a request.
    app.extensions["edx_features"] = load_features(app.config["EDX_FEATURES_OVERRIDE"])


UNIT = ApiUnit(
    "edx",
    bp,
    _http_envelope,
    HTTP_MESSAGES,
    security_schemes={h: {"type": "apiKey", "in": "header", "name": h} for h in KEY_HEADERS},
    settings={
        "EDX_TTL": (0.0, float),  # seconds an EDX workspace lock lasts; 0: until unlocked
        "EDX_FEATURES_OVERRIDE": ("", str),  # YAML file changing the restricted-feature table
    },
    lock_types=until_unlocked(LOCK_TYPE, "EDX_TTL"),
    catalog=CATALOG,
    setup=setup,
)
