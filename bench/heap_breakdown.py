#!/usr/bin/env python3
"""Lockstep's heap at its peak, grouped by what holds it, from a heaptrack profile.

    python3 bench/heap_breakdown.py /tmp/lockstep-heaptrack.zst

Runs `heaptrack_print` to get the stacks live at the peak, then puts each stack in the first
group whose marker it contains (the order of GROUPS matters).
"""

from __future__ import annotations

import collections
import subprocess
import sys
import tempfile
from pathlib import Path

GROUPS = [
    ("reflector stores (ExternalSecrets; for the reload controller, its workloads)",
     ["reflector..store..Writer", "reflector::store::Writer"]),
    ("reload controller's Secret/ConfigMap cache", ["reload..resources", "reload::resources"]),
    ("event recorder (kube-runtime Recorder cache, publish)", ["reconcile::publish", "events::Recorder"]),
    ("metrics (per-ExternalSecret series)", ["metrics::Metrics", "prometheus_client"]),
    ("OpenBao reads and value parsing", ["lockstep_providers::vault"]),
    ("reconcile in flight (Secret GET/build/serialize/write)",
     ["externalsecret::reconcile", "externalsecret::write", "externalsecret::build", "externalsecret::fetch"]),
    ("controller scheduler and runner", ["kube_runtime..scheduler", "kube_runtime::scheduler",
                                         "controller..runner", "controller::runner"]),
    ("HTTP connection buffers (hyper)", ["hyper"]),
]
# Within the reflector stores: the managedFields trees (serde_json maps).
MANAGED_FIELDS = ["clone_subtree", "ManagedFieldsEntry"]


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as d:
        stacks = Path(d) / "peak.txt"
        subprocess.run(["heaptrack_print", "-f", sys.argv[1], "--print-peaks", "0",
                        "--print-allocators", "0", "--print-temporary", "0",
                        "--print-flamegraph", str(stacks), "--flamegraph-cost-type", "peak"],
                       check=True, stdout=subprocess.DEVNULL)
        total, by_group, managed = 0, collections.Counter(), 0
        for line in stacks.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            n = int(n)
            total += n
            group = next((name for name, marks in GROUPS if any(m in stack for m in marks)), "other")
            by_group[group] += n
            if group == GROUPS[0][0] and any(m in stack for m in MANAGED_FIELDS):
                managed += n
    print(f"heap live at the peak: {total / 2**20:.1f} MiB")
    for group, n in by_group.most_common():
        print(f"  {n / 2**20:5.1f} MiB  {group}")
        if group == GROUPS[0][0]:
            print(f"  {'':5}      of which {managed / 2**20:.1f} MiB in metadata maps (managedFields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
