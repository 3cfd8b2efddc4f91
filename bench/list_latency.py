#!/usr/bin/env python3
"""How long the kube-apiserver takes to answer a label-selected LIST of Secrets, while objects of
another resource are being written (as ExternalSecret status patches and Events are written
during a sync).

    python3 testenv/testenv.py run -- python3 bench/list_latency.py

A LIST without resourceVersion is a consistent read: the apiserver serves it from its watch
cache only once the cache has caught up with etcd's current revision, and writes to other
resources move that revision without sending the Secrets cache an event, so the LIST waits for
the next progress notification. A LIST with resourceVersion=0 ("any") and a GET by name do not
wait. Only counts and times are printed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_bench import Http, fail, load_env  # noqa: E402

NS = "lockstep-bench-list"
SAMPLES = 30


def timed(kube: Http, path: str) -> str:
    times = []
    for _ in range(SAMPLES):
        start = time.monotonic()
        code, _ = kube.raw("GET", path)
        times.append(time.monotonic() - start)
        if code != 200:
            fail(f"GET {path}: HTTP {code}")
    times.sort()
    return f"median {times[len(times) // 2] * 1000:6.1f} ms   max {times[-1] * 1000:6.1f} ms"


def main() -> int:
    if not os.environ.get("LOCKSTEP_TESTENV"):
        fail("run through `python3 testenv/testenv.py run -- python3 bench/list_latency.py`")
    env = load_env(os.environ["LOCKSTEP_TESTENV"])
    kube = Http(env["LOCKSTEP_KUBE_SERVER"], env["LOCKSTEP_KUBE_CA"],
                {"Authorization": f"Bearer {env['LOCKSTEP_ADMIN_TOKEN']}"})
    kube.must("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for i in range(50):
        kube.must("POST", f"/api/v1/namespaces/{NS}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"s{i}", "labels": {"n": str(i)}},
            "data": {"k": "eA=="}})
    queries = [
        ("LIST Secrets, labelSelector (consistent read)", f"/api/v1/namespaces/{NS}/secrets?labelSelector=n%3D7"),
        ("LIST Secrets, labelSelector, resourceVersion=0", f"/api/v1/namespaces/{NS}/secrets?labelSelector=n%3D7&resourceVersion=0"),
        ("GET one Secret", f"/api/v1/namespaces/{NS}/secrets/s7"),
    ]
    time.sleep(1)
    print(f"{SAMPLES} requests each, one at a time")
    print("with no other writes:")
    for what, path in queries:
        print(f"  {what:<48} {timed(kube, path)}")

    stop = threading.Event()

    def writer() -> None:
        writer_http = Http(env["LOCKSTEP_KUBE_SERVER"], env["LOCKSTEP_KUBE_CA"], kube.headers)
        for i in range(20000):  # bounded; stopped long before
            if stop.is_set():
                return
            writer_http.must("POST", f"/api/v1/namespaces/{NS}/configmaps",
                             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.5)
    print("while ConfigMaps are created one after another in the same namespace:")
    for what, path in queries:
        print(f"  {what:<48} {timed(kube, path)}")
    stop.set()
    thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
