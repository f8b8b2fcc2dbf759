"""`moments schema event|rules|action`: print the JSON Schema generated from the pydantic models."""

from __future__ import annotations

import json

from schemas.action import Action
from schemas.event import Event
from schemas.rules import RuleFile

MODELS = {"event": Event, "rules": RuleFile, "action": Action}


def json_schema(name: str) -> dict:
    schema = MODELS[name].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"micro-moments/{name}.schema.json"
    return schema


def configure_parser(parser) -> None:
    parser.add_argument("which", choices=sorted(MODELS), help="which contract")


def run(args) -> int:
    print(json.dumps(json_schema(args.which), indent=2, sort_keys=True))
    return 0
