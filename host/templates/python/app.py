"""{{name}}: marks available images that lack an `owner` tag (componentize-py)."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import (
    ActionKind,
    Action_Tag,
    ImageEvent,
    ImageState,
    PluginInfo,
    PolicyError_InvalidConfig,
    PricedPlan,
    Proposal,
    Tag,
)

CONFIG = {"required": "owner"}


class Plugin(exports.Plugin):
    def describe(self) -> PluginInfo:
        # reviews=True only if `review` below should be called on the priced plan.
        return PluginInfo(name="{{name}}", version="0.1.0", actions=[ActionKind.TAG], needs=[], reviews=False)

    def configure(self, config: str) -> None:
        try:
            value = json.loads(config or "{}") or {}
        except ValueError as err:
            raise Err(PolicyError_InvalidConfig(f"config is not JSON: {err}"))
        unknown = sorted(set(value) - {"required"})
        if unknown:
            raise Err(PolicyError_InvalidConfig(f"unknown config key `{unknown[0]}`"))
        CONFIG["required"] = value.get("required", "owner")

    def propose(self, event: ImageEvent) -> list[Proposal]:
        image = event.image
        required = CONFIG["required"]
        tags = {t.key: t.value for t in image.tags}
        if image.state != ImageState.AVAILABLE or required in tags or "compliance" in tags:
            return []
        action = Action_Tag([Tag(key="compliance", value=f"missing:{required}")])
        return [Proposal(image_id=image.id, action=action, reason=f"no `{required}` tag")]

    def review(self, plan: PricedPlan) -> list:
        return []
