"""Required tags, the amiwarden reference policy in Python (componentize-py).

An available image that misses a required tag is marked (or deprecated); once it carries
them all, the marker this plugin wrote is taken off again. The Rust and JavaScript
versions behave the same; tests/conformance holds the cases all three must pass.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    ActionKind,
    Action_DeprecateAt,
    Action_Tag,
    Action_Untag,
    ImageEvent,
    ImageState,
    PluginInfo,
    PolicyError_Failed,
    PolicyError_InvalidConfig,
    PricedPlan,
    Proposal,
    Tag,
    Verdict,
)

VERSION = "0.1.0"
DAY = 86_400
MARKER_PREFIX = "missing:"
KEYS = ["required", "action", "deprecate_after_days", "marker_tag", "misbehave"]
MISBEHAVIOURS = ["loop", "alloc", "trap", "read-file"]


def default_config():
    return {
        "required": ["owner", "cost-center"],
        "action": "tag",
        "deprecate_after_days": 30,
        "marker_tag": "compliance",
        "misbehave": None,
    }


# The validated config; componentize-py may make a new `Plugin` per call, so it lives here.
CONFIG = default_config()


def invalid(message):
    return Err(PolicyError_InvalidConfig(message))


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_config(text):
    """The validated config, or raises Err(invalid-config) with the shared messages."""
    if text.strip() == "":
        return default_config()
    try:
        value = json.loads(text, parse_constant=reject_constant)
    except ValueError as err:
        raise invalid(f"config is not valid JSON: {err}")
    if value is None:
        return default_config()
    if not isinstance(value, dict):
        raise invalid("config must be a JSON object")
    for key in sorted(value):
        if key not in KEYS:
            raise invalid(f"unknown config key `{key}`; expected one of {', '.join(KEYS)}")
    config = default_config()
    if "required" in value:
        required = value["required"]
        shape = "`required` must be a non-empty list of non-empty tag keys"
        if not isinstance(required, list) or not required:
            raise invalid(shape)
        keys = []
        for item in required:
            if not isinstance(item, str) or item == "":
                raise invalid(shape)
            if item in keys:
                raise invalid(f"`required` lists `{item}` twice")
            keys.append(item)
        config["required"] = keys
    if "action" in value:
        if value["action"] not in ("tag", "deprecate") or not isinstance(value["action"], str):
            raise invalid('`action` must be "tag" or "deprecate"')
        config["action"] = value["action"]
    if "deprecate_after_days" in value:
        days = value["deprecate_after_days"]
        if not is_number(days) or float(days) != int(days) or not 0 <= days <= 3650:
            raise invalid("`deprecate_after_days` must be a whole number of days from 0 to 3650")
        config["deprecate_after_days"] = int(days)
    if "marker_tag" in value:
        marker = value["marker_tag"]
        if not isinstance(marker, str) or marker == "":
            raise invalid("`marker_tag` must be a non-empty tag key")
        config["marker_tag"] = marker
    if config["marker_tag"] in config["required"]:
        raise invalid(f"`marker_tag` `{config['marker_tag']}` is also a required tag")
    if "misbehave" in value:
        if value["misbehave"] not in MISBEHAVIOURS or not isinstance(value["misbehave"], str):
            raise invalid("`misbehave` must be one of loop, alloc, trap, read-file")
        config["misbehave"] = value["misbehave"]
    return config


def tag_value(image, key):
    for tag in image.tags:
        if tag.key == key:
            return tag.value
    return None


def evaluate(config, image):
    """The proposals for one image: none or one."""
    if image.state != ImageState.AVAILABLE:
        return []
    required = config["required"]
    marker_tag = config["marker_tag"]
    missing = [key for key in required if not tag_value(image, key)]
    marker = tag_value(image, marker_tag)
    if not missing:
        if marker is None or not marker.startswith(MARKER_PREFIX):
            return []
        reason = (
            f"carries every required tag ({', '.join(required)}); "
            f"the marker {marker_tag}={marker} is stale"
        )
        return [Proposal(image.id, Action_Untag([marker_tag]), reason)]
    reason = f"missing required tags: {', '.join(missing)}"
    host.log(host.LogLevel.DEBUG, f"{image.id} {reason}")
    if config["action"] == "tag":
        value = MARKER_PREFIX + ",".join(missing)
        if marker == value:
            return []
        return [Proposal(image.id, Action_Tag([Tag(marker_tag, value)]), reason)]
    days = config["deprecate_after_days"]
    at = image.creation_time + days * DAY
    if image.deprecation_time is not None and image.deprecation_time <= at:
        return []
    reason = f"{reason}; deprecated {days} days after creation"
    return [Proposal(image.id, Action_DeprecateAt(at), reason)]


def misbehave(mode):
    """Misbehaves on purpose, so the conformance suite can check every language's sandbox."""
    if mode == "loop":
        while True:
            pass
    if mode == "alloc":
        blocks = []
        while True:
            blocks.append(bytearray(1 << 20))
    if mode == "trap":
        raise RuntimeError("required-tags traps on purpose (misbehave = trap)")
    if mode == "read-file":
        try:
            with open("/etc/passwd") as f:
                text = f.read()
        except OSError as err:
            raise Err(PolicyError_Failed(f"reading /etc/passwd denied: {err}"))
        raise Err(PolicyError_Failed(f"reading /etc/passwd succeeded: {len(text)} bytes"))


class Plugin(exports.Plugin):
    def describe(self) -> PluginInfo:
        actions = [ActionKind.TAG, ActionKind.UNTAG, ActionKind.DEPRECATE]
        return PluginInfo("required-tags", VERSION, actions, [], reviews=False)

    def configure(self, config: str) -> None:
        global CONFIG
        CONFIG = parse_config(config)

    def propose(self, event: ImageEvent) -> list[Proposal]:
        if CONFIG["misbehave"] is not None:
            misbehave(CONFIG["misbehave"])
        return evaluate(CONFIG, event.image)

    def review(self, plan: PricedPlan) -> list[Verdict]:
        # Never called (describe says reviews=False), but the world exports it.
        return []
