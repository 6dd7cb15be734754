// Required tags, the amiwarden reference policy in JavaScript (jco, QuickJS backend).
//
// An available image that misses a required tag is marked (or deprecated); once it
// carries them all, the marker this plugin wrote is taken off again. The Rust and Python
// versions behave the same; tests/conformance holds the cases all three must pass.
//
// Bindings: records are camelCase objects, variants `{ tag, val }`, enums strings,
// `option<T>` is `T | null`, s64 a number; an export returning `result<T, E>` returns T
// or throws E.

import host from "amiwarden:policy/host@0.2.0";

const VERSION = "0.1.0";
const DAY = 86400;
const MARKER_PREFIX = "missing:";
const KEYS = ["required", "action", "deprecate_after_days", "marker_tag", "misbehave"];
const MISBEHAVIOURS = ["loop", "alloc", "trap", "read-file"];

function defaultConfig() {
  return {
    required: ["owner", "cost-center"],
    action: "tag",
    deprecateAfterDays: 30,
    markerTag: "compliance",
    misbehave: null,
  };
}

let config = defaultConfig();

/** A policy-error `invalid-config`, to throw. */
function invalid(message) {
  return { tag: "invalid-config", val: message };
}

/** The validated config, or throws invalid-config with the shared messages. */
function parseConfig(text) {
  if (text.trim() === "") return defaultConfig();
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid(`config is not valid JSON: ${err.message}`);
  }
  if (value === null) return defaultConfig();
  if (typeof value !== "object" || Array.isArray(value)) throw invalid("config must be a JSON object");
  const has = (key) => Object.prototype.hasOwnProperty.call(value, key);
  for (const key of Object.keys(value).sort()) {
    if (!KEYS.includes(key)) throw invalid(`unknown config key \`${key}\`; expected one of ${KEYS.join(", ")}`);
  }
  const out = defaultConfig();
  if (has("required")) {
    const shape = "`required` must be a non-empty list of non-empty tag keys";
    const list = value.required;
    if (!Array.isArray(list) || list.length === 0) throw invalid(shape);
    const keys = [];
    for (const item of list) {
      if (typeof item !== "string" || item === "") throw invalid(shape);
      if (keys.includes(item)) throw invalid(`\`required\` lists \`${item}\` twice`);
      keys.push(item);
    }
    out.required = keys;
  }
  if (has("action")) {
    if (value.action !== "tag" && value.action !== "deprecate") throw invalid('`action` must be "tag" or "deprecate"');
    out.action = value.action;
  }
  if (has("deprecate_after_days")) {
    const days = value.deprecate_after_days;
    if (typeof days !== "number" || !Number.isInteger(days) || days < 0 || days > 3650) {
      throw invalid("`deprecate_after_days` must be a whole number of days from 0 to 3650");
    }
    out.deprecateAfterDays = days;
  }
  if (has("marker_tag")) {
    if (typeof value.marker_tag !== "string" || value.marker_tag === "") {
      throw invalid("`marker_tag` must be a non-empty tag key");
    }
    out.markerTag = value.marker_tag;
  }
  if (out.required.includes(out.markerTag)) throw invalid(`\`marker_tag\` \`${out.markerTag}\` is also a required tag`);
  if (has("misbehave")) {
    if (!MISBEHAVIOURS.includes(value.misbehave)) throw invalid("`misbehave` must be one of loop, alloc, trap, read-file");
    out.misbehave = value.misbehave;
  }
  return out;
}

function tagValue(image, key) {
  const tag = image.tags.find((t) => t.key === key);
  return tag === undefined ? null : tag.value;
}

/** The proposals for one image: none or one. */
function evaluate(cfg, image) {
  if (image.state !== "available") return [];
  const missing = cfg.required.filter((key) => !tagValue(image, key));
  const marker = tagValue(image, cfg.markerTag);
  if (missing.length === 0) {
    if (marker === null || !marker.startsWith(MARKER_PREFIX)) return [];
    const reason = `carries every required tag (${cfg.required.join(", ")}); the marker ${cfg.markerTag}=${marker} is stale`;
    return [{ imageId: image.id, action: { tag: "untag", val: [cfg.markerTag] }, reason }];
  }
  let reason = `missing required tags: ${missing.join(", ")}`;
  host.log("debug", `${image.id} ${reason}`);
  if (cfg.action === "tag") {
    const value = MARKER_PREFIX + missing.join(",");
    if (marker === value) return [];
    return [{ imageId: image.id, action: { tag: "tag", val: [{ key: cfg.markerTag, value }] }, reason }];
  }
  const at = image.creationTime + cfg.deprecateAfterDays * DAY;
  if (image.deprecationTime !== null && image.deprecationTime <= at) return [];
  reason = `${reason}; deprecated ${cfg.deprecateAfterDays} days after creation`;
  return [{ imageId: image.id, action: { tag: "deprecate-at", val: at }, reason }];
}

/** Misbehaves on purpose, so the conformance suite can check every language's sandbox. */
function misbehave(mode) {
  if (mode === "loop") {
    for (;;) {}
  }
  if (mode === "alloc") {
    // Big blocks and no per-byte work: the memory cap must hit before the CPU budget.
    const blocks = [];
    for (;;) blocks.push(new ArrayBuffer(8 << 20));
  }
  if (mode === "trap") {
    // Not a policy-error: the bindings cannot lower it, so the call traps.
    throw new Error("required-tags traps on purpose (misbehave = trap)");
  }
  if (mode === "read-file") {
    // QuickJS here has no file API at all (no `std`/`os` modules, no `fs`): there is
    // nothing to call, which is the denial.
    const api = globalThis.std ?? globalThis.os ?? globalThis.require ?? null;
    if (api === null) {
      throw { tag: "failed", val: "reading /etc/passwd denied: this JavaScript runtime has no file API" };
    }
    throw { tag: "failed", val: "reading /etc/passwd: a file API is exposed to the plugin" };
  }
}

export const plugin = {
  describe() {
    return { name: "required-tags", version: VERSION, actions: ["tag", "untag", "deprecate"], needs: [], reviews: false };
  },

  configure(text) {
    config = parseConfig(text);
  },

  propose(event) {
    if (config.misbehave !== null) misbehave(config.misbehave);
    return evaluate(config, event.image);
  },

  // Never called (describe says reviews: false), but the world exports it.
  review(_plan) {
    return [];
  },
};
