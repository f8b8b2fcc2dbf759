"""Braze REST adapter: `/users/track` custom events, or API-triggered campaigns and Canvases.

Contract (braze.com/docs/api): `Authorization: Bearer <key>`, JSON bodies; `/users/track` takes at
most 75 objects per request, the trigger endpoints at most 50 recipients; 2xx bodies are
`{"message": "success", ...}`, possibly with non-fatal `"errors": [{"type", "input_array",
"index"}]`; fatal errors are `{"message": <reason>, "errors": [...]}` with a 4xx; 429 carries
`X-RateLimit-Reset` (epoch seconds). Braze does not deduplicate events: `action_id` rides in the
properties so downstream consumers can.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.action import Action
from udfs.vendors.http import HttpRequest, HttpResponse, RequestItem, json_body
from udfs.vendors.outcome import Outcome, Plan, Verdict
from udfs.vendors.profile import DEFAULT_PROFILE_FIELDS, event_properties, iso8601_ms

USERS_TRACK_PATH = "/users/track"
CAMPAIGN_SEND_PATH = "/campaigns/trigger/send"
CANVAS_SEND_PATH = "/canvas/trigger/send"

# Rate-limit keys: the two trigger endpoints share one documented limit.
USERS_TRACK = "braze.users_track"
MESSAGING = "braze.messaging"

MAX_TRACK_OBJECTS = 75
MAX_RECIPIENTS = 50


@dataclass(frozen=True)
class BrazeConfig:
    endpoint: str  # e.g. https://rest.iad-01.braze.com
    api_key: str
    profile_fields: tuple[str, ...] = DEFAULT_PROFILE_FIELDS
    max_track_objects: int = MAX_TRACK_OBJECTS
    max_recipients: int = MAX_RECIPIENTS

    def __post_init__(self) -> None:
        if not 1 <= self.max_track_objects <= MAX_TRACK_OBJECTS:
            raise ValueError(f"max_track_objects must be 1..{MAX_TRACK_OBJECTS}")
        if not 1 <= self.max_recipients <= MAX_RECIPIENTS:
            raise ValueError(f"max_recipients must be 1..{MAX_RECIPIENTS}")

    def __repr__(self) -> str:  # never print the key
        return f"BrazeConfig(endpoint={self.endpoint!r}, profile_fields={self.profile_fields!r})"


class BrazeAdapter:
    name = "braze"

    def __init__(self, config: BrazeConfig, wall_clock: Callable[[], float] = time.time):
        self.config = config
        self._wall_clock = wall_clock
        self._base = config.endpoint.rstrip("/")

    def plan(self, actions: Sequence[Action]) -> Plan:
        track: list[Action] = []
        campaigns: dict[str, list[Action]] = defaultdict(list)
        canvases: dict[str, list[Action]] = defaultdict(list)
        rejected: dict[str, str] = {}
        for action in actions:
            if action.campaign_id and action.canvas_id:
                rejected[action.action_id] = (
                    "action names both campaign_id and canvas_id; Braze triggers one of them"
                )
            elif action.campaign_id:
                campaigns[action.campaign_id].append(action)
            elif action.canvas_id:
                canvases[action.canvas_id].append(action)
            else:
                track.append(action)
        requests = [
            self._track_request(chunk) for chunk in _chunks(track, self.config.max_track_objects)
        ]
        for campaign_id, group in campaigns.items():
            for chunk in _recipient_chunks(group, self.config.max_recipients):
                requests.append(self._trigger_request(CAMPAIGN_SEND_PATH, campaign_id, chunk))
        for canvas_id, group in canvases.items():
            for chunk in _recipient_chunks(group, self.config.max_recipients):
                requests.append(self._trigger_request(CANVAS_SEND_PATH, canvas_id, chunk))
        return Plan(requests=requests, rejected=rejected)

    def _track_request(self, actions: Sequence[Action]) -> HttpRequest:
        events = [
            {
                "external_id": action.user_id,
                "name": action.action,
                "time": iso8601_ms(action.trigger_ts),
                "properties": event_properties(action, self.config.profile_fields),
            }
            for action in actions
        ]
        return self._request(USERS_TRACK, USERS_TRACK_PATH, {"events": events}, actions)

    def _trigger_request(self, path: str, target_id: str, actions: Sequence[Action]) -> HttpRequest:
        is_campaign = path == CAMPAIGN_SEND_PATH
        properties_key = "trigger_properties" if is_campaign else "canvas_entry_properties"
        recipients = [
            {
                "external_user_id": action.user_id,
                properties_key: event_properties(action, self.config.profile_fields),
            }
            for action in actions
        ]
        body = {"campaign_id" if is_campaign else "canvas_id": target_id, "recipients": recipients}
        return self._request(MESSAGING, path, body, actions)

    def _request(
        self, endpoint: str, path: str, body: dict, actions: Sequence[Action]
    ) -> HttpRequest:
        return HttpRequest(
            vendor=self.name,
            endpoint=endpoint,
            method="POST",
            url=self._base + path,
            path=path,
            headers={
                "Authorization": f"Bearer {self.config.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=json_body(body),
            items=tuple(RequestItem(a.action_id, a.user_id) for a in actions),
        )

    def classify(self, request: HttpRequest, response: HttpResponse) -> Outcome:
        payload = response.json()
        message = _message(payload, response)
        if 200 <= response.status < 300:
            return Outcome(
                Verdict.DELIVERED,
                response.status,
                message,
                failed=_minor_errors(request, payload),
            )
        if response.status == 429:
            return Outcome(
                Verdict.RATE_LIMITED,
                429,
                message,
                retry_after_s=self._seconds_until_reset(response),
            )
        if response.status >= 500 or response.status in (408,):
            return Outcome(Verdict.RETRY, response.status, message)
        return Outcome(Verdict.FAILED, response.status, message)

    def _seconds_until_reset(self, response: HttpResponse) -> float | None:
        reset = response.header("X-RateLimit-Reset")
        try:
            reset_epoch_s = float(reset) if reset is not None else None
        except ValueError:
            return None
        if reset_epoch_s is None:
            return None
        return max(0.0, reset_epoch_s - self._wall_clock())


def _message(payload: object, response: HttpResponse) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        return payload["message"]
    return response.text(200)


def _minor_errors(request: HttpRequest, payload: object) -> dict[str, str]:
    """Braze's non-fatal errors name the rejected object by array and index: map them to actions.
    Our bodies carry one array per request (events, or recipients), so the index is enough."""
    if not isinstance(payload, dict) or not isinstance(payload.get("errors"), list):
        return {}
    failed: dict[str, str] = {}
    for error in payload["errors"]:
        if not isinstance(error, dict):
            continue
        index = error.get("index")
        if isinstance(index, int) and 0 <= index < len(request.items):
            failed[request.items[index].action_id] = str(error.get("type", "rejected by Braze"))
    return failed


def _chunks(items: Sequence[Action], size: int) -> list[Sequence[Action]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _recipient_chunks(actions: Sequence[Action], size: int) -> list[list[Action]]:
    """At most `size` recipients, and one recipient per user per request: Braze dedupes recipients
    with the same external_user_id, so a second action for that user would silently not send."""
    chunks: list[list[Action]] = []
    users_in: list[set[str]] = []
    for action in actions:
        for chunk, users in zip(chunks, users_in, strict=True):
            if len(chunk) < size and action.user_id not in users:
                chunk.append(action)
                users.add(action.user_id)
                break
        else:
            chunks.append([action])
            users_in.append({action.user_id})
    return chunks
