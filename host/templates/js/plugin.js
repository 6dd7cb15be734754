// {{name}}: marks available images that lack an `owner` tag (jco, QuickJS backend).
// Records are camelCase objects, variants `{ tag, val }`, enums strings.

let required = "owner";

export const plugin = {
  describe() {
    // reviews: true only if `review` below should be called on the priced plan.
    return { name: "{{name}}", version: "0.1.0", actions: ["tag"], needs: [], reviews: false };
  },
  configure(text) {
    let value;
    try {
      value = JSON.parse(text || "{}") || {};
    } catch (err) {
      throw { tag: "invalid-config", val: `config is not JSON: ${err.message}` };
    }
    for (const key of Object.keys(value)) {
      if (key !== "required") throw { tag: "invalid-config", val: `unknown config key \`${key}\`` };
    }
    required = value.required ?? "owner";
  },
  propose(event) {
    const image = event.image;
    const has = (key) => image.tags.some((t) => t.key === key);
    if (image.state !== "available" || has(required) || has("compliance")) return [];
    const action = { tag: "tag", val: [{ key: "compliance", value: `missing:${required}` }] };
    return [{ imageId: image.id, action, reason: `no \`${required}\` tag` }];
  },
  review(_plan) {
    return [];
  },
};
