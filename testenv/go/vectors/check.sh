#!/usr/bin/env bash
# Regenerates the ESO hash golden vectors with Go and fails, showing a diff, when they differ
# from the checked-in crates/api/tests/vectors/eso_hash.json.
#
#   testenv/go/vectors/check.sh            check (CI)
#   testenv/go/vectors/check.sh --update   rewrite the checked-in file
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
golden="$root/crates/api/tests/vectors/eso_hash.json"

export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
(cd "$here" && go run .) >"$tmp"

if [[ "${1:-}" == "--update" ]]; then
    cp "$tmp" "$golden"
    echo "updated $golden"
    exit 0
fi

if ! diff -u "$golden" "$tmp"; then
    echo "ESO hash vectors differ from $golden; run $0 --update and review the change" >&2
    exit 1
fi
echo "ESO hash vectors match $golden"
