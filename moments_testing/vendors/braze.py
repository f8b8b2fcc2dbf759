"""A strict Braze REST server: `/users/track`, `/campaigns/trigger/send`, `/canvas/trigger/send`.

Follows braze.com/docs/api: `Authorization: Bearer <key>` (401 otherwise), JSON only; users/track
takes at most 75 objects (attributes + events + purchases) and answers 201 `{"message":
"success", "events_processed": n}`, with non-fatal `errors: [{"type", "input_array", "index"}]`
for objects it skipped; fatal errors are `{"message": ..., "errors": [...]}` with a 400; trigger
endpoints take at most 50 recipients and answer 201 `{"dispatch_id", "message": "success"}`; 429s
carry `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds). The exact wording of Braze's
fatal messages is not published for every case; the shapes and status codes are.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from moments_testing.vendors.base import Faults, Rejection, Reply, VendorServer

USERS_TRACK = "braze.users_track"
MESSAGING = "braze.messaging"

PATHS = {
    "/users/track": USERS_TRACK,
    "/campaigns/trigger/send": MESSAGING,
    "/canvas/trigger/send": MESSAGING,
}
MAX_TRACK_OBJECTS = 75
MAX_RECIPIENTS = 50
USER_IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
RECIPIENT_IDENTIFIERS = ("external_user_id", "user_alias", "braze_id", "email")
EVENT_KEYS = {*USER_IDENTIFIERS, "app_id", "name", "time", "properties", "_update_existing_only"}
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def fatal(message: str, errors: list | None = None, status: int = 400) -> Rejection:
    return Rejection(Reply(status, {"message": message, "errors": errors or []}))


class BrazeServer(VendorServer):
    name = "braze"

    def __init__(
        self,
        api_key: str = "braze-test-key",
        rate_limits: dict[str, tuple[int, float]] | None = None,
        faults: Faults | None = None,
        known_campaigns: set[str] | None = None,
        known_canvases: set[str] | None = None,
    ):
        super().__init__(api_key, rate_limits, faults)
        self.known_campaigns = known_campaigns
        self.known_canvases = known_canvases

    def endpoint_for(self, method: str, path: str) -> str:
        if path not in PATHS:
            raise Rejection(Reply(404, {"message": f"No route for {path}"}))
        if method != "POST":
            raise Rejection(Reply(405, {"message": f"{method} not allowed on {path}"}))
        return PATHS[path]

    def check_auth(self, headers) -> None:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            raise Rejection(Reply(401, {"message": "Invalid API key"}))

    def rate_limited(self, endpoint: str, limit: int, reset_epoch_s: int) -> Reply:
        return Reply(
            429,
            {"message": "API rate limit exceeded"},
            self.rate_headers(limit, 0, reset_epoch_s),
        )

    def rate_headers(self, limit: int, remaining: int, reset_epoch_s: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_epoch_s),
        }

    def server_error(self) -> Reply:
        return Reply(500, {"message": "Internal Server Error"})

    def bad_content_type(self) -> Reply:
        return Reply(400, {"message": "Content-Type must be application/json", "errors": []})

    def bad_json(self) -> Reply:
        return Reply(400, {"message": "Received unparseable response body", "errors": []})

    def process(self, endpoint: str, path: str, body: Any) -> tuple[Reply, list[dict]]:
        if not isinstance(body, dict):
            raise fatal("Request body must be a JSON object")
        if path == "/users/track":
            return self._users_track(body)
        return self._trigger(path, body)

    def _users_track(self, body: dict) -> tuple[Reply, list[dict]]:
        unknown = set(body) - {"attributes", "events", "purchases", "partner"}
        if unknown:
            raise fatal(f"Unknown fields: {sorted(unknown)}")
        arrays = {name: body.get(name, []) for name in ("attributes", "events", "purchases")}
        for name, value in arrays.items():
            if not isinstance(value, list):
                raise fatal(f"'{name}' must be an array")
        total = sum(len(value) for value in arrays.values())
        if total > MAX_TRACK_OBJECTS:
            raise fatal(
                f"Too many objects in request: {total}; /users/track accepts at most "
                f"{MAX_TRACK_OBJECTS} attributes, events and purchases combined"
            )
        if arrays["attributes"] or arrays["purchases"]:
            raise fatal("This test server accepts events only")
        errors: list[dict] = []
        accepted: list[dict] = []
        for index, event in enumerate(arrays["events"]):
            problem = _event_problem(event)
            if problem:
                errors.append({"type": problem, "input_array": "events", "index": index})
            else:
                accepted.append(
                    {
                        "action_id": event.get("properties", {}).get("action_id"),
                        "user": event["external_id"],
                        "name": event["name"],
                        "time": event["time"],
                        "properties": event.get("properties", {}),
                    }
                )
        if not accepted:
            raise fatal(
                "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
                errors,
            )
        reply: dict[str, Any] = {"message": "success", "events_processed": len(accepted)}
        if errors:
            reply["errors"] = errors
        return Reply(201, reply), [item for item in accepted if item["action_id"]]

    def _trigger(self, path: str, body: dict) -> tuple[Reply, list[dict]]:
        is_campaign = path == "/campaigns/trigger/send"
        id_key = "campaign_id" if is_campaign else "canvas_id"
        properties_key = "trigger_properties" if is_campaign else "canvas_entry_properties"
        allowed = {id_key, "send_id", properties_key, "broadcast", "audience", "recipients"}
        if not is_campaign:
            allowed.discard("send_id")
        unknown = set(body) - allowed
        if unknown:
            raise fatal(f"Unknown fields: {sorted(unknown)}")
        target = body.get(id_key)
        if not isinstance(target, str) or not target:
            raise fatal(f"'{id_key}' must be a non-empty string")
        known = self.known_campaigns if is_campaign else self.known_canvases
        if known is not None and target not in known:
            raise fatal(f"Invalid {id_key} {target}")
        recipients = body.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise fatal("'recipients' must be a non-empty array (or set broadcast)")
        if len(recipients) > MAX_RECIPIENTS:
            raise fatal(f"Too many recipients: {len(recipients)}; the limit is {MAX_RECIPIENTS}")
        accepted = []
        for recipient in recipients:
            if not isinstance(recipient, dict):
                raise fatal("Each recipient must be an object")
            extra = set(recipient) - {
                *RECIPIENT_IDENTIFIERS,
                "prioritization",
                properties_key,
                "send_to_existing_only",
                "attributes",
            }
            if extra:
                raise fatal(f"Unknown recipient fields: {sorted(extra)}")
            identifiers = [key for key in RECIPIENT_IDENTIFIERS if key in recipient]
            if len(identifiers) != 1:
                raise fatal(
                    "Each recipient needs exactly one of " + ", ".join(RECIPIENT_IDENTIFIERS)
                )
            properties = recipient.get(properties_key, {})
            problem = _properties_problem(properties)
            if problem:
                raise fatal(f"Invalid {properties_key}: {problem}")
            accepted.append(
                {
                    "action_id": properties.get("action_id"),
                    "user": recipient.get("external_user_id"),
                    id_key: target,
                    "properties": properties,
                }
            )
        users = [item["user"] for item in accepted]
        if len(users) != len(set(users)):
            # Braze dedupes recipients: a second one for the same user silently gets nothing.
            seen: set = set()
            accepted = [i for i in accepted if not (i["user"] in seen or seen.add(i["user"]))]
        reply = {"dispatch_id": uuid.uuid4().hex, "message": "success"}
        return Reply(201, reply), [item for item in accepted if item["action_id"]]


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "event must be an object"
    unknown = set(event) - EVENT_KEYS
    if unknown:
        return f"unknown event fields {sorted(unknown)}"
    identifiers = [key for key in USER_IDENTIFIERS if key in event]
    if len(identifiers) != 1:
        return "'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required"
    if not isinstance(event.get(identifiers[0]), str):
        return f"'{identifiers[0]}' must be a string"
    if not isinstance(event.get("name"), str) or not event["name"]:
        return "'name' is required and must be a string"
    if not isinstance(event.get("time"), str) or not _is_iso8601(event["time"]):
        return "'time' must be an ISO 8601 datetime string"
    return _properties_problem(event.get("properties", {}))


def _is_iso8601(text: str) -> bool:
    if not ISO_8601.match(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _properties_problem(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return "'properties' must be an object"
    for key, value in properties.items():
        if key.startswith("$"):
            return f"property key {key!r} may not start with $"
        if len(key) > 255:
            return "property keys are at most 255 characters"
        if value is None:
            return f"property {key!r} is null"
        if isinstance(value, str) and len(value) > 255:
            return f"property {key!r} is longer than 255 characters"
        if not isinstance(value, str | int | float | bool | list | dict):
            return f"property {key!r} has an unsupported type"
    return None
