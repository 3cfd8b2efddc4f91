#!/usr/bin/env bash
# Renders the template conformance cases with Go's text/template + sprig (see main.go) and fails,
# showing a diff, when the result differs from the checked-in
# crates/template/tests/conformance/golden.json.
#
#   testenv/go/templates/check.sh            check (CI)
#   testenv/go/templates/check.sh --update   rewrite the checked-in file
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cases="$root/crates/template/tests/conformance/cases.json"
golden="$root/crates/template/tests/conformance/golden.json"

export GOTOOLCHAIN=local
# ESO's container has no local time zone: Go's time.Local is UTC there.
export TZ=UTC
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
(cd "$here" && go run . "$cases") >"$tmp"

if [[ "${1:-}" == "--update" ]]; then
    cp "$tmp" "$golden"
    echo "updated $golden"
    exit 0
fi

if ! diff -u "$golden" "$tmp"; then
    echo "template goldens differ from $golden; run $0 --update and review the change" >&2
    exit 1
fi
echo "template goldens match $golden"
# Go must read what the Rust engine makes (PKCS#12 files, AES ciphertexts, certificates).
(cd "$here" && go run . verify "$root/crates/template/tests/conformance/rust_made.json")
