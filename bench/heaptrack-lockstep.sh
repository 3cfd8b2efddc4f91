#!/bin/bash
# Runs lockstep under heaptrack (Debian package `heaptrack`), for attributing Lockstep's memory:
#
#   python3 testenv/testenv.py run -- python3 bench/sync_bench.py --phases memory \
#       --lockstep bench/heaptrack-lockstep.sh
#   python3 bench/heap_breakdown.py /tmp/lockstep-heaptrack.zst
#
# Under this wrapper the RSS rows sync_bench.py prints are the wrapper's, not Lockstep's; the
# heap numbers come from heaptrack. SIGTERM is passed on to the lockstep process itself.
# LOCKSTEP_BIN picks the binary, HEAPTRACK_OUT the profile (without the .zst suffix).
set -u
bin=${LOCKSTEP_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/lockstep/target}/release/lockstep}
out=${HEAPTRACK_OUT:-/tmp/lockstep-heaptrack}
heaptrack -o "$out" "$bin" "$@" &
wrapper=$!
lockstep_pid() {
    local f pid comm state ppid rest
    for f in /proc/[0-9]*/stat; do
        read -r pid comm state ppid rest < "$f" 2>/dev/null || continue
        if [ "$ppid" = "$wrapper" ] && [ "$comm" = "(lockstep)" ]; then echo "$pid"; fi
    done
}
trap 'p=$(lockstep_pid); [ -n "$p" ] && kill -TERM "$p"' TERM INT
wait "$wrapper"
wait "$wrapper"
