"""Iterable REST adapter: custom events (`/api/events/trackBulk`, `/api/events/track`) or journeys
(`/api/workflows/triggerWorkflow`).

Contract (api.iterable.com/api/docs): header `Api-Key: <key>`, JSON bodies; an event carries
`eventName`, `userId` or `email`, `createdAt` (integer Unix time in seconds), `dataFields` and `id`
(<= 512 bytes; an event sent again with the same id updates the first instead of adding one, so
our retries do not duplicate). Errors are `{"msg", "code", "params"}`; trackBulk answers 200 with
`successCount`, `failCount` and `failedUpdates` (lists of emails / userIds per failure kind);
429 (`RateLimitExceeded`) has no documented headers, so we back off and throttle client-side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from schemas.action import Action
from udfs.vendors.http import HttpRequest, HttpResponse, RequestItem, json_body
from udfs.vendors.outcome import Outcome, Plan, Verdict
from udfs.vendors.profile import DEFAULT_PROFILE_FIELDS, event_properties

TRACK_PATH = "/api/events/track"
TRACK_BULK_PATH = "/api/events/trackBulk"
TRIGGER_WORKFLOW_PATH = "/api/workflows/triggerWorkflow"

TRACK = "iterable.track"
TRACK_BULK = "iterable.track_bulk"
TRIGGER_WORKFLOW = "iterable.trigger_workflow"

DEFAULT_ENDPOINT = "https://api.iterable.com"
MAX_BULK_EVENTS = 1000
MAX_EVENT_ID_BYTES = 512

Identity = Literal["userId", "email"]


@dataclass(frozen=True)
class IterableConfig:
    api_key: str
    endpoint: str = DEFAULT_ENDPOINT
    identity: Identity = "userId"  # "email": identify users by profile.email instead
    profile_fields: tuple[str, ...] = DEFAULT_PROFILE_FIELDS
    max_bulk_events: int = MAX_BULK_EVENTS

    def __post_init__(self) -> None:
        if self.identity not in ("userId", "email"):
            raise ValueError("identity must be userId or email")
        if not 1 <= self.max_bulk_events <= MAX_BULK_EVENTS:
            raise ValueError(f"max_bulk_events must be 1..{MAX_BULK_EVENTS}")

    def __repr__(self) -> str:  # never print the key
        return f"IterableConfig(endpoint={self.endpoint!r}, identity={self.identity!r})"


class IterableAdapter:
    name = "iterable"

    def __init__(self, config: IterableConfig):
        self.config = config
        self._base = config.endpoint.rstrip("/")

    def plan(self, actions: Sequence[Action]) -> Plan:
        events: list[tuple[Action, str]] = []
        workflows: list[tuple[Action, str, int]] = []
        rejected: dict[str, str] = {}
        for action in actions:
            identity = self._identity(action)
            if identity is None:
                rejected[action.action_id] = (
                    "iterable identity is email but the action's profile has no email"
                )
            elif len(action.action_id.encode()) > MAX_EVENT_ID_BYTES:
                rejected[action.action_id] = f"action_id longer than {MAX_EVENT_ID_BYTES} bytes"
            elif action.workflow_id is not None:
                workflow_id = _workflow_id(action.workflow_id)
                if workflow_id is None:
                    rejected[action.action_id] = (
                        f"workflow_id {action.workflow_id!r} is not an integer"
                    )
                else:
                    workflows.append((action, identity, workflow_id))
            else:
                events.append((action, identity))
        requests: list[HttpRequest] = []
        size = self.config.max_bulk_events
        for start in range(0, len(events), size):
            chunk = events[start : start + size]
            if len(chunk) == 1:
                action, identity = chunk[0]
                requests.append(
                    self._request(TRACK, TRACK_PATH, self._event(action, identity), chunk)
                )
            else:
                body = {"events": [self._event(action, identity) for action, identity in chunk]}
                requests.append(self._request(TRACK_BULK, TRACK_BULK_PATH, body, chunk))
        for action, identity, workflow_id in workflows:
            body = {
                "workflowId": workflow_id,
                self.config.identity: identity,
                "dataFields": self._data_fields(action),
            }
            requests.append(
                self._request(TRIGGER_WORKFLOW, TRIGGER_WORKFLOW_PATH, body, [(action, identity)])
            )
        return Plan(requests=requests, rejected=rejected)

    def _identity(self, action: Action) -> str | None:
        if self.config.identity == "userId":
            return action.user_id
        email = action.profile.get("email")
        return email if isinstance(email, str) and email else None

    def _data_fields(self, action: Action) -> dict[str, Any]:
        fields = event_properties(action, self.config.profile_fields)
        # createdAt is whole seconds: keep the millisecond trigger time too.
        fields["trigger_ts"] = action.trigger_ts
        return fields

    def _event(self, action: Action, identity: str) -> dict[str, Any]:
        return {
            "eventName": action.action,
            self.config.identity: identity,
            "createdAt": action.trigger_ts // 1000,
            "dataFields": self._data_fields(action),
            "id": action.action_id,
        }

    def _request(
        self, endpoint: str, path: str, body: dict, chunk: Sequence[tuple[Action, str]]
    ) -> HttpRequest:
        return HttpRequest(
            vendor=self.name,
            endpoint=endpoint,
            method="POST",
            url=self._base + path,
            path=path,
            headers={
                "Api-Key": self.config.api_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=json_body(body),
            items=tuple(RequestItem(action.action_id, identity) for action, identity in chunk),
        )

    def classify(self, request: HttpRequest, response: HttpResponse) -> Outcome:
        payload = response.json()
        message = _message(payload, response)
        if 200 <= response.status < 300:
            if isinstance(payload, dict) and payload.get("code") not in (None, "Success"):
                # Iterable reports some request-level failures in a 200 with a non-Success code.
                return Outcome(Verdict.FAILED, response.status, message)
            return Outcome(
                Verdict.DELIVERED,
                response.status,
                message,
                failed=_failed_updates(request, payload),
            )
        if response.status == 429 or (
            isinstance(payload, dict) and payload.get("code") == "RateLimitExceeded"
        ):
            return Outcome(Verdict.RATE_LIMITED, response.status, message)
        if response.status >= 500 or response.status == 408:
            return Outcome(Verdict.RETRY, response.status, message)
        return Outcome(Verdict.FAILED, response.status, message)


def _workflow_id(value: int | str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _message(payload: object, response: HttpResponse) -> str:
    if isinstance(payload, dict):
        code, msg = payload.get("code"), payload.get("msg")
        if isinstance(msg, str) and msg or isinstance(code, str) and code:
            return f"{code or ''}: {msg or ''}".strip(": ")
    return response.text(200)


def _failed_updates(request: HttpRequest, payload: object) -> dict[str, str]:
    """trackBulk names failed events only by the user's email or userId, grouped by reason
    (`failedUpdates: {"notFoundUserIds": [...], "forgottenEmails": [...], ...}`): every event of
    that user in the request is failed with the group's name as the reason."""
    if not isinstance(payload, dict):
        return {}
    groups = payload.get("failedUpdates")
    if not isinstance(groups, dict):
        return {}
    reason_by_identity: dict[str, str] = {}
    for reason, identities in groups.items():
        if isinstance(identities, list):
            for identity in identities:
                if isinstance(identity, str):
                    reason_by_identity.setdefault(identity, reason)
    return {
        item.action_id: f"iterable failedUpdates.{reason_by_identity[item.identity]}"
        for item in request.items
        if item.identity in reason_by_identity
    }
