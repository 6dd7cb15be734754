# What the benchmark scripts share; sourced, not run.

# default_limits_policy OUT: scripts/bench/policy.toml without its [plugin.limits] tables
# (a table runs until the next header), so every plugin runs at its default limits.
default_limits_policy() {
  awk '/^\[plugin\.limits\]/{skip=1; next} /^\[/{skip=0} !skip' scripts/bench/policy.toml >"$1"
}

# two_builds HEADER_LINES ARGS...: the arguments `OLD_BIN NEW_BIN [IMAGES] [ROUNDS]` of a
# script that compares two builds, as the globals old, new (absolute paths), images
# (default 100000) and rounds (default 3); then the working directory is the
# repository's root and `work` a temporary directory removed when the script exits.
# Fewer than two arguments print the calling script's header lines HEADER_LINES (a sed
# range such as 2,8) without their `# ` and exit 2.
two_builds() {
  local header=$1
  shift
  [ $# -ge 2 ] || { sed -n "${header}p" "$0" | sed 's/^# \{0,1\}//'; exit 2; }
  old=$(realpath "$1")
  new=$(realpath "$2")
  images=${3:-100000}
  rounds=${4:-3}
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}
