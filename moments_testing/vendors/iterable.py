"""A strict Iterable API server: `/api/events/track`, `/api/events/trackBulk`,
`/api/workflows/triggerWorkflow`.

Follows api.iterable.com/api/docs: header `Api-Key` (401 `BadApiKey` otherwise), JSON only; errors
are `{"msg", "code", "params"}`; an event needs `eventName` and `email` or `userId`; `createdAt`
is an integer Unix time in *seconds* (a millisecond value is rejected here, as it would land in the
year 50,000 at Iterable); `id` (<= 512 bytes) makes a resent event an update, so this server
counts an id once per event but records every acceptance to measure resends. trackBulk answers
200 with `successCount`, `failCount` and `failedUpdates`; 429s are `RateLimitExceeded` bodies.
"""

from __future__ import annotations

import time
from typing import Any

from moments_testing.vendors.base import Faults, Rejection, Reply, VendorServer

TRACK = "iterable.track"
TRACK_BULK = "iterable.track_bulk"
TRIGGER_WORKFLOW = "iterable.trigger_workflow"

PATHS = {
    "/api/events/track": TRACK,
    "/api/events/trackBulk": TRACK_BULK,
    "/api/workflows/triggerWorkflow": TRIGGER_WORKFLOW,
}
MAX_BULK_EVENTS = 1000
EVENT_KEYS = {
    "email",
    "userId",
    "eventName",
    "id",
    "createdAt",
    "dataFields",
    "campaignId",
    "templateId",
    "createNewFields",
}
WORKFLOW_KEYS = {"workflowId", "email", "userId", "listId", "dataFields"}
FAILED_UPDATE_KEYS = (
    "invalidEmails",
    "invalidUserIds",
    "notFoundEmails",
    "notFoundUserIds",
    "forgottenEmails",
    "forgottenUserIds",
    "conflictEmails",
    "conflictUserIds",
    "invalidDataEmails",
    "invalidDataUserIds",
)


def error(status: int, code: str, msg: str, params: Any = None) -> Rejection:
    return Rejection(Reply(status, {"msg": msg, "code": code, "params": params}))


class IterableServer(VendorServer):
    name = "iterable"

    def __init__(
        self,
        api_key: str = "iterable-test-key",
        rate_limits: dict[str, tuple[int, float]] | None = None,
        faults: Faults | None = None,
        forgotten_user_ids: set[str] | None = None,
        known_workflows: set[int] | None = None,
        project_id: int = 1234,
    ):
        super().__init__(api_key, rate_limits, faults)
        self.forgotten_user_ids = forgotten_user_ids or set()
        self.known_workflows = known_workflows
        self.project_id = project_id

    def endpoint_for(self, method: str, path: str) -> str:
        if path not in PATHS:
            raise error(404, "NotFound", f"Endpoint {path} not found")
        if method != "POST":
            raise error(405, "MethodNotAllowed", f"{method} not allowed on {path}")
        return PATHS[path]

    def check_auth(self, headers) -> None:
        if headers.get("Api-Key") != self.api_key:
            raise error(401, "BadApiKey", "Invalid API key", {"endpoint": "unknown"})

    def rate_limited(self, endpoint: str, limit: int, reset_epoch_s: int) -> Reply:
        path = next(p for p, e in PATHS.items() if e == endpoint)
        return Reply(
            429,
            {
                "msg": f"Exceeded rate limit for endpoint: {path}, project: {self.project_id}",
                "code": "RateLimitExceeded",
                "params": {},
            },
        )

    def server_error(self) -> Reply:
        return Reply(500, {"msg": "Internal error", "code": "GenericError", "params": None})

    def bad_content_type(self) -> Reply:
        return Reply(
            400,
            {
                "msg": "Content-Type must be application/json",
                "code": "InvalidJsonBody",
                "params": None,
            },
        )

    def bad_json(self) -> Reply:
        return Reply(400, {"msg": "Invalid JSON body", "code": "InvalidJsonBody", "params": None})

    def process(self, endpoint: str, path: str, body: Any) -> tuple[Reply, list[dict]]:
        if not isinstance(body, dict):
            raise error(400, "InvalidJsonBody", "Request body must be a JSON object")
        if endpoint == TRACK:
            problem = _event_problem(body)
            if problem:
                raise error(400, "BadParams", problem)
            if body.get("userId") in self.forgotten_user_ids:
                raise error(400, "BadParams", "User has been forgotten")
            reply = {
                "msg": f"Event with id: {body['id']} tracked.",
                "code": "Success",
                "params": {"id": body["id"]},
            }
            return Reply(200, reply), [_accepted(body)]
        if endpoint == TRACK_BULK:
            return self._track_bulk(body)
        return self._trigger_workflow(body)

    def _track_bulk(self, body: dict) -> tuple[Reply, list[dict]]:
        if set(body) != {"events"}:
            raise error(400, "BadParams", 'Body must be {"events": [...]}')
        events = body["events"]
        if not isinstance(events, list) or not events:
            raise error(400, "BadParams", "'events' must be a non-empty array")
        if len(events) > MAX_BULK_EVENTS:
            raise error(
                400,
                "BatchTooLarge",
                f"Batch of {len(events)} events exceeds the limit of {MAX_BULK_EVENTS}",
            )
        for index, event in enumerate(events):
            problem = _event_problem(event)
            if problem:
                raise error(400, "BadParams", f"events[{index}]: {problem}")
        failed = {key: [] for key in FAILED_UPDATE_KEYS}
        accepted = []
        for event in events:
            if event.get("userId") in self.forgotten_user_ids:
                if event["userId"] not in failed["forgottenUserIds"]:
                    failed["forgottenUserIds"].append(event["userId"])
            else:
                accepted.append(_accepted(event))
        reply = {
            "successCount": len(accepted),
            "failCount": len(events) - len(accepted),
            "invalidEmails": [],
            "invalidUserIds": [],
            "filteredOutFields": [],
            "createdFields": [],
            "failedUpdates": failed,
        }
        return Reply(200, reply), accepted

    def _trigger_workflow(self, body: dict) -> tuple[Reply, list[dict]]:
        unknown = set(body) - WORKFLOW_KEYS
        if unknown:
            raise error(400, "BadParams", f"Unknown fields {sorted(unknown)}")
        workflow_id = body.get("workflowId")
        if not isinstance(workflow_id, int) or isinstance(workflow_id, bool):
            raise error(400, "BadParams", "workflowId must be an integer")
        if self.known_workflows is not None and workflow_id not in self.known_workflows:
            raise error(400, "BadParams", f"Workflow {workflow_id} not found")
        if not _identity_ok(body):
            raise error(400, "BadParams", "email or userId is required")
        data_fields = body.get("dataFields", {})
        if not isinstance(data_fields, dict):
            raise error(400, "BadParams", "dataFields must be an object")
        reply = {"msg": "", "code": "Success", "params": None}
        item = {
            "action_id": data_fields.get("action_id"),
            "user": body.get("userId"),
            "workflowId": workflow_id,
            "dataFields": data_fields,
        }
        return Reply(200, reply), [item] if item["action_id"] else []


def _identity_ok(body: dict) -> bool:
    email, user_id = body.get("email"), body.get("userId")
    return (isinstance(email, str) and "@" in email) or (isinstance(user_id, str) and user_id)


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "event must be an object"
    unknown = set(event) - EVENT_KEYS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if not isinstance(event.get("eventName"), str) or not event["eventName"]:
        return "eventName is required"
    if not _identity_ok(event):
        return "email or userId is required"
    created_at = event.get("createdAt")
    if created_at is not None:
        if not isinstance(created_at, int) or isinstance(created_at, bool):
            return "createdAt must be an integer Unix timestamp"
        if created_at > time.time() + 86_400 * 365:
            return "createdAt is in the far future: it must be in seconds, not milliseconds"
    if "dataFields" in event and not isinstance(event["dataFields"], dict):
        return "dataFields must be an object"
    event_id = event.get("id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id.encode()) > 512):
        return "id must be a string of at most 512 bytes"
    return None


def _accepted(event: dict) -> dict:
    return {
        "action_id": event.get("id") or event.get("dataFields", {}).get("action_id"),
        "user": event.get("userId") or event.get("email"),
        "eventName": event["eventName"],
        "createdAt": event.get("createdAt"),
        "dataFields": event.get("dataFields", {}),
    }
