# Shared by scripts/test and scripts/demo.

# Build outputs live outside the clone, so repeated runs (and CI) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

# Everything else is installed by the project's own scripts from the package registries.
require_tools() {
  local missing=()
  for tool in cargo go python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "error: missing ${missing[*]}: Lockstep needs Rust (cargo), Go and Python 3" >&2
    exit 1
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    step "installing openssl (Debian package) to generate the test environment's certificates"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq openssl >/dev/null
    else
      echo "error: openssl is missing; install the Debian package openssl" >&2
      exit 1
    fi
  fi
}

# Adds up cargo test's per-binary results into one closing line.
summarize_cargo_test() {
  awk '
    /^test result: / {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) passed += $i
        if ($(i+1) ~ /^failed/) failed += $i
        if ($(i+1) ~ /^ignored/) ignored += $i
      }
      binaries++
    }
    END {
      if (binaries == 0) { print "tests: no test ran"; exit 1 }
      if (ignored > 0) { print "error: " ignored " tests were ignored" }
      printf "tests: %d passed, %d failed\n", passed, failed
    }' "$1"
}
