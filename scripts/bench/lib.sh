# What the benchmark scripts share; sourced, not run.

# default_limits_policy OUT: scripts/bench/policy.toml without its [plugin.limits] tables
# (a table runs until the next header), so every plugin runs at its default limits.
default_limits_policy() {
  awk '/^\[plugin\.limits\]/{skip=1; next} /^\[/{skip=0} !skip' scripts/bench/policy.toml >"$1"
}
