#!/usr/bin/env python3
"""Lockstep's reload benchmark on the local environment (Secret change -> Deployment rollout).

Run it inside a fresh local environment (testenv.py starts and stops everything):

    export CARGO_TARGET_DIR=/root/.cache/lockstep/target
    cargo build --release -p lockstep
    python3 testenv/testenv.py run -- python3 bench/reload_bench.py

It fills the cluster with 10,000 Secrets (1-4 KiB), 5,000 ConfigMaps (0.5-2 KiB) and 1,000
Deployments over 50 namespaces. Every Deployment is annotated `reloader.stakater.com/auto:
"true"` and uses two of its namespace's Secrets (one through `envFrom`, one as a volume) and one
ConfigMap (a volume); the other Secrets and ConfigMaps are used by nothing. The Deployments have
0 replicas: kube-controller-manager still makes a ReplicaSet for each pod template, which is
what a rollout is, without thousands of pods that nothing would run.

Then it starts `lockstep run --reload` on all namespaces and measures:

  ready    time from process start until every Deployment carries its baseline annotation
           `reload.lockstep.dev/hashes` (seen by a watch on Deployments opened before the
           process starts), and that no Deployment was rolled on the way;
  memory   Lockstep's peak RSS (VmHWM from /proc/<pid>/status) at the ready point and at the end;
  reload   UPDATES Secret updates, one at a time, round-robin over the namespaces, each to a
           Secret that one Deployment uses (alternately its envFrom and its volume Secret), and
           between them updates of Secrets no Deployment uses. For each used Secret: the time
           from just before the update request is sent until a watch delivers the Deployment with
           a changed spec.template (its pod template patched), and until a watch delivers the
           new ReplicaSet (kube-controller-manager's part); p50/p99/max. Each update waits for
           both (or a timeout) plus a pause, so the updates are independent of each other;
  rolled   ReplicaSets per Deployment listed before the updates and after them (once the
           debounce window and a few seconds have passed): exactly the Deployments whose Secret
           changed have exactly one new ReplicaSet, and no other Deployment has one.

It also reports the CPU time of each process and Lockstep's `reloader_reload_executed_total`.
No secret value is printed: only counts, sizes and times. Only the Python standard library is
used; the HTTP, process and measurement helpers are sync_bench.py's.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from sync_bench import (FIELD_MANAGER, ROOT, Http, Lockstep, cpu_seconds, exit_on_sigterm, fail,
                        fmt_ms, fmt_s,
                        load_env, mib, parallel, percentile, say, sum_metric)

NS_PREFIX = "reload-bench"
KEY_NS = "reload-bench-system"
BENCH_LABEL = "lockstep.dev/reload-bench"
HASHES = "reload.lockstep.dev/hashes"
AUTO = "reloader.stakater.com/auto"


# --------------------------------------------------------------------------------------------
# watching


class Watch:
    """Lists and then watches one kind across all namespaces (label-selected), calling
    `see(type, obj, monotonic time)` for every object of the list and every event."""

    def __init__(self, kube: Http, path: str, selector: str, see):
        self.kube = kube
        self.path = path
        self.selector = urllib.parse.quote(selector)
        self.see = see
        self.stopping = False
        self.conn: http.client.HTTPSConnection | None = None
        self.errors = 0
        self.rv = self._list()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _list(self) -> str:
        cont = ""
        while True:
            q = f"{self.path}?labelSelector={self.selector}&limit=500"
            if cont:
                q += f"&continue={urllib.parse.quote(cont)}"
            code, lst = self.kube.call("GET", q)
            if code != 200:
                fail(f"listing {self.path}: HTTP {code}")
            now = time.monotonic()
            for obj in lst.get("items", []):
                self.see("LISTED", obj, now)
            cont = lst["metadata"].get("continue")
            if not cont:
                return lst["metadata"]["resourceVersion"]

    def _run(self) -> None:
        while not self.stopping and self.errors < 20:
            q = (f"{self.path}?watch=true&labelSelector={self.selector}&allowWatchBookmarks=true"
                 f"&timeoutSeconds=1800&resourceVersion={self.rv}")
            self.conn = conn = self.kube.connect(timeout=3600)
            try:
                conn.request("GET", q, headers=self.kube.headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    self.errors += 1
                    time.sleep(0.5)
                    continue
                while not self.stopping:
                    line = resp.readline()
                    if not line:
                        break
                    now = time.monotonic()
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        # 410 Gone: start again from a fresh list.
                        self.errors += 1
                        self.rv = self._list()
                        break
                    self.rv = obj.get("metadata", {}).get("resourceVersion", self.rv)
                    if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self.see(ev["type"], obj, now)
            except (OSError, http.client.HTTPException, ValueError):
                if self.stopping:
                    return
                self.errors += 1
                time.sleep(0.2)
            finally:
                conn.close()

    def stop(self) -> None:
        self.stopping = True
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)


class Deployments:
    """What the Deployment and ReplicaSet watches saw, by Deployment (namespace, name)."""

    def __init__(self):
        self.cond = threading.Condition()
        # The pod template as canonical JSON, by Deployment. (Not metadata.generation: the
        # apiserver bumps a Deployment's generation on any annotation change too, so the
        # baseline annotation alone moves it.)
        self.template: dict[tuple[str, str], str] = {}
        self.uid: dict[tuple[str, str], str] = {}
        self.baselined: set[tuple[str, str]] = set()
        # (time, template) of every pod template change seen, by Deployment.
        self.template_seen: dict[tuple[str, str], list[tuple[float, str]]] = {}
        # owner uid -> [(time, ReplicaSet name)] of ReplicaSets seen ADDED by the watch.
        self.rs_added: dict[str, list[tuple[float, str]]] = {}
        self.rs_names: dict[str, set[str]] = {}

    def see_deployment(self, kind: str, d: dict, now: float) -> None:
        meta = d["metadata"]
        key = (meta["namespace"], meta["name"])
        with self.cond:
            self.uid[key] = meta["uid"]
            template = json.dumps(d["spec"]["template"], sort_keys=True)
            if self.template.get(key) != template:
                self.template_seen.setdefault(key, []).append((now, template))
            self.template[key] = template
            if HASHES in (meta.get("annotations") or {}):
                self.baselined.add(key)
            self.cond.notify_all()

    def see_replicaset(self, kind: str, rs: dict, now: float) -> None:
        meta = rs["metadata"]
        for owner in meta.get("ownerReferences") or []:
            if owner.get("kind") != "Deployment":
                continue
            with self.cond:
                names = self.rs_names.setdefault(owner["uid"], set())
                if kind == "DELETED":
                    names.discard(meta["name"])
                elif meta["name"] not in names:
                    names.add(meta["name"])
                    if kind == "ADDED":
                        self.rs_added.setdefault(owner["uid"], []).append((now, meta["name"]))
                self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True


# --------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        env_file = os.environ.get("LOCKSTEP_TESTENV")
        if not env_file:
            fail("LOCKSTEP_TESTENV is not set: run this through "
                 "`python3 testenv/testenv.py run -- python3 bench/reload_bench.py`")
        self.env = load_env(env_file)
        self.binary = Path(args.lockstep)
        if not self.binary.exists():
            fail(f"{self.binary} does not exist: build it with "
                 "`CARGO_TARGET_DIR=/root/.cache/lockstep/target cargo build --release -p lockstep`")
        self.kube = Http(self.env["LOCKSTEP_KUBE_SERVER"], self.env["LOCKSTEP_KUBE_CA"],
                         {"Authorization": f"Bearer {self.env['LOCKSTEP_ADMIN_TOKEN']}"})
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.work = Path(tempfile.mkdtemp(prefix="lockstep-reload-bench-", dir=base))
        self.lockstep: Lockstep | None = None
        self.results: dict = {}
        self.env_pids: dict[str, int] = {}
        pids = Path(self.env["LOCKSTEP_TESTENV_DIR"]) / "pids"
        for line in pids.read_text().splitlines() if pids.exists() else []:
            pid, name = line.split(maxsplit=1)
            if name in ("kube-apiserver", "etcd", "kube-controller-manager"):
                self.env_pids[name] = int(pid)
        s = args.scale
        self.n_ns = args.namespaces or min(50, max(2, round(50 * s)))
        self.n_secrets = args.secrets or max(self.n_ns * 4, round(10000 * s))
        self.n_cms = args.configmaps or max(self.n_ns, round(5000 * s))
        self.n_deploy = args.deployments or max(self.n_ns, round(1000 * s))
        # Per namespace (the totals are rounded to whole namespaces).
        self.s_per = self.n_secrets // self.n_ns
        self.c_per = self.n_cms // self.n_ns
        self.d_per = self.n_deploy // self.n_ns
        if self.s_per < 2 * self.d_per + 1 or self.c_per < self.d_per:
            fail("each namespace needs more than 2 Secrets and 1 ConfigMap per Deployment")
        self.rng = random.Random(args.seed)
        self.state = Deployments()

    def ns(self, j: int) -> str:
        return f"{NS_PREFIX}-{j:02d}"

    def cpu_now(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) or 0.0 for name, pid in self.env_pids.items()}
        if self.lockstep:
            out["lockstep"] = cpu_seconds(self.lockstep.pid) or 0.0
        t = os.times()
        out["benchmark (python)"] = t.user + t.system
        return out

    # ---- objects

    def secret_body(self, j: int, k: int) -> dict:
        size = self.rng.randint(1024, 4096)
        raw = os.urandom(size * 3 // 4)
        keys = 1 + k % 3
        part = len(raw) // keys
        data = {f"key-{x}": base64.b64encode(raw[x * part:(x + 1) * part]).decode() for x in range(keys)}
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": f"secret-{k:04d}", "namespace": self.ns(j),
                             "labels": {"app.kubernetes.io/name": f"app-{k // 2:03d}"}},
                "data": data}

    def configmap_body(self, j: int, k: int) -> dict:
        size = self.rng.randint(512, 2048)
        line = "setting.%03d = %s\n"
        text = "".join(line % (x, base64.b32encode(os.urandom(20)).decode().lower())
                       for x in range(size // 48))
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": f"config-{k:04d}", "namespace": self.ns(j),
                             "labels": {"app.kubernetes.io/name": f"app-{k:03d}"}},
                "data": {"app.properties": text, "LOG_LEVEL": "info"}}

    def deployment_body(self, j: int, i: int) -> dict:
        name = f"app-{i:03d}"
        labels = {"app.kubernetes.io/name": name, BENCH_LABEL: "true"}
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns(j), "labels": labels,
                         "annotations": {AUTO: "true"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{
                            "name": "app", "image": "registry.invalid/bench/app:1.0.0",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [{"name": "APP_NAME", "value": name},
                                    {"name": "APP_ENV", "value": "bench"}],
                            "envFrom": [{"secretRef": {"name": f"secret-{2 * i:04d}"}}],
                            "volumeMounts": [
                                {"name": "credentials", "mountPath": "/etc/app/credentials",
                                 "readOnly": True},
                                {"name": "config", "mountPath": "/etc/app/config", "readOnly": True}],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                          "limits": {"memory": "64Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        }],
                        "volumes": [
                            {"name": "credentials", "secret": {"secretName": f"secret-{2 * i + 1:04d}"}},
                            {"name": "config", "configMap": {"name": f"config-{i:04d}"}}],
                    },
                },
            },
        }

    def create_all(self) -> None:
        a = self.args
        kube = self.kube
        for j in [*range(self.n_ns)]:
            kube.must("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns(j)}})
        kube.must("POST", "/api/v1/namespaces",
                  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEY_NS}})

        def create(item) -> int:
            path, body = item
            data = json.dumps(body).encode()
            code, out = kube.raw("POST", path, data)
            if code not in (201, 409):
                fail(f"POST {path}: HTTP {code}: {out[:300]!r}")
            return len(data)

        for what, per, plural, make in (
                ("Secrets", self.s_per, "secrets", self.secret_body),
                ("ConfigMaps", self.c_per, "configmaps", self.configmap_body)):
            t = time.monotonic()
            items = [(f"/api/v1/namespaces/{self.ns(j)}/{plural}", make(j, k))
                     for k in range(per) for j in range(self.n_ns)]
            total = sum(parallel(create, items, a.workers))
            dt = time.monotonic() - t
            say(f"  {len(items)} {what} ({total / 2**20:.1f} MiB as JSON) in {dt:.1f}s "
                f"({len(items) / dt:.0f}/s)")
            self.results[f"create_{plural}_s"] = dt
        t = time.monotonic()
        items = [(f"/apis/apps/v1/namespaces/{self.ns(j)}/deployments", self.deployment_body(j, i))
                 for i in range(self.d_per) for j in range(self.n_ns)]
        parallel(create, items, a.workers)
        dt = time.monotonic() - t
        say(f"  {len(items)} Deployments in {dt:.1f}s")
        self.results["create_deployments_s"] = dt

    def replicasets(self) -> dict[str, set[str]]:
        """A fresh list: ReplicaSet names by owning Deployment uid."""
        out: dict[str, set[str]] = {}
        cont = ""
        while True:
            q = f"/apis/apps/v1/replicasets?labelSelector={urllib.parse.quote(BENCH_LABEL)}&limit=500"
            if cont:
                q += f"&continue={urllib.parse.quote(cont)}"
            lst = self.kube.must("GET", q)
            for rs in lst["items"]:
                for o in rs["metadata"].get("ownerReferences") or []:
                    if o.get("kind") == "Deployment":
                        out.setdefault(o["uid"], set()).add(rs["metadata"]["name"])
            cont = lst["metadata"].get("continue")
            if not cont:
                return out

    # ---- phases

    def run(self) -> int:
        a = self.args
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.binary.stat().st_mtime))
        print(f"Lockstep reload benchmark: {self.binary} (built {built}; repository HEAD {head})", flush=True)
        print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; "
              f"load average at start {os.getloadavg()[0]:.2f}; kube-apiserver "
              f"{self.env.get('LOCKSTEP_KUBE_VERSION')}", flush=True)
        print(f"{self.n_ns} namespaces x ({self.s_per} Secrets, {self.c_per} ConfigMaps, "
              f"{self.d_per} Deployments) = {self.s_per * self.n_ns} Secrets, "
              f"{self.c_per * self.n_ns} ConfigMaps, {self.d_per * self.n_ns} Deployments; "
              f"{a.updates} updates of used Secrets, {a.pause_ms} ms apart"
              + (f"; extra lockstep args: {' '.join(a.lockstep_arg)}" if a.lockstep_arg else ""),
              flush=True)
        deploy_watch = rs_watch = None
        try:
            self.apply_crds()
            say("creating the objects")
            self.create_all()
            st = self.state
            n = self.d_per * self.n_ns
            rs_watch = Watch(self.kube, "/apis/apps/v1/replicasets", BENCH_LABEL, st.see_replicaset)
            deploy_watch = Watch(self.kube, "/apis/apps/v1/deployments", BENCH_LABEL, st.see_deployment)
            say("waiting for kube-controller-manager's first ReplicaSet of every Deployment")
            t = time.monotonic()
            if not st.wait(lambda: len(st.uid) == n and all(st.rs_names.get(u) for u in st.uid.values()),
                           a.timeout):
                fail("not every Deployment has a ReplicaSet")
            say(f"  done in {time.monotonic() - t:.1f}s")
            self.phase_ready(n)
            self.phase_reload()
        finally:
            for w in (deploy_watch, rs_watch):
                if w:
                    w.stop()
            if self.lockstep:
                self.lockstep.stop()
            if a.keep_logs:
                say(f"logs kept in {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        self.summary()
        if a.json:
            Path(a.json).write_text(json.dumps(self.results, indent=2) + "\n")
        return 0

    def apply_crds(self) -> None:
        # The ExternalSecret controller runs too; with its CRDs served it just idles.
        for f in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
            group, plural = f.stem.split("_", 1)
            text = f.read_text()
            text = text.split("\n---\n", 1)[1] if "\n---\n" in text else text
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{group}"
            self.kube.must("PATCH", f"{path}?fieldManager={FIELD_MANAGER}&force=true",
                           text.encode(), content_type="application/apply-patch+yaml")

    def phase_ready(self, n: int) -> None:
        st = self.state
        with st.cond:
            templates_before = dict(st.template)
        cpu0 = self.cpu_now()
        args = ["--reload", "--disable-cluster-stores", *self.args.lockstep_arg]
        # Where the hash-key Secret lives (`--reload-key-namespace`), as a pod gets it.
        os.environ["POD_NAMESPACE"] = KEY_NS
        ls = self.lockstep = Lockstep(self.binary, self.env["KUBECONFIG"], None, 8,
                                      self.work / "lockstep.log", args)
        say(f"POD_NAMESPACE={KEY_NS} lockstep run {' '.join(args)} (pid {ls.pid}); waiting for every Deployment's baseline")
        ok = st.wait(lambda: len(st.baselined) >= n or ls.proc.poll() is not None, self.args.timeout)
        t_ready = time.monotonic()
        ls.check_alive()
        if not ok:
            fail(f"only {len(st.baselined)} of {n} Deployments have {HASHES} after {self.args.timeout}s")
        status = ls.status()
        ready_s = t_ready - ls.started
        with st.cond:
            rolled_at_start = sorted(k for k, t in st.template.items() if templates_before.get(k) != t)
        cpu = {k: v - cpu0.get(k, 0) for k, v in self.cpu_now().items()}
        say(f"  all {n} baselined {ready_s:.2f}s after process start; VmHWM {mib(status.get('VmHWM', 0))}")
        self.results["ready"] = {
            "deployments": n, "ready_s": ready_s, "vmhwm_kib": status.get("VmHWM", 0),
            "rss_kib": status.get("VmRSS", 0), "rolled_at_start": len(rolled_at_start),
            "cpu_s": cpu}

    def phase_reload(self) -> None:
        a = self.args
        st = self.state
        ls = self.lockstep
        # Let the baseline writes and their echoes pass before the first update.
        time.sleep(2)
        before = self.replicasets()
        with st.cond:
            uids = dict(st.uid)
        # Round-robin over the namespaces; in each, Deployments picked at random without
        # replacement; alternately the envFrom Secret (2i) and the volume Secret (2i+1).
        pools = {j: self.rng.sample(range(self.d_per), self.d_per) for j in range(self.n_ns)}
        plan = []
        for u in range(min(a.updates, self.d_per * self.n_ns)):
            j = u % self.n_ns
            i = pools[j].pop()
            plan.append((j, i, f"secret-{2 * i + (u // self.n_ns) % 2:04d}"))
        unused = [f"secret-{k:04d}" for k in range(2 * self.d_per, self.s_per)]
        patched: list[float] = []
        rs_new: list[float] = []
        missed_patch = missed_rs = 0
        cpu0 = self.cpu_now()
        m0 = ls.metrics()
        t_phase = time.monotonic()
        say(f"{len(plan)} Secret updates, {a.pause_ms} ms apart")
        for u, (j, i, secret) in enumerate(plan):
            ns, dname = self.ns(j), f"app-{i:03d}"
            key = (ns, dname)
            uid = uids[key]
            if unused and a.unused_every and u % a.unused_every == 0:
                # A Secret that no Deployment uses: must roll nothing.
                body = {"data": {"key-0": base64.b64encode(os.urandom(64)).decode()}}
                self.kube.must("PATCH", f"/api/v1/namespaces/{ns}/secrets/{self.rng.choice(unused)}",
                               body, content_type="application/merge-patch+json")
                time.sleep(a.pause_ms / 1000)
            with st.cond:
                template0 = st.template[key]
                seen0 = len(st.template_seen[key])
                rs0 = set(st.rs_names.get(uid, set()))
            body = {"data": {"key-0": base64.b64encode(os.urandom(96)).decode()}}
            t0 = time.monotonic()
            self.kube.must("PATCH", f"/api/v1/namespaces/{ns}/secrets/{secret}", body,
                           content_type="application/merge-patch+json")
            got_gen = st.wait(lambda: st.template[key] != template0, a.update_timeout)
            got_rs = st.wait(lambda: bool(st.rs_names.get(uid, set()) - rs0), a.update_timeout)
            with st.cond:
                if got_gen:
                    patched.append(st.template_seen[key][seen0][0] - t0)
                if got_rs:
                    new = st.rs_names[uid] - rs0
                    rs_new.append(min(t for t, name in st.rs_added.get(uid, []) if name in new) - t0)
            missed_patch += not got_gen
            missed_rs += not got_rs
            if (u + 1) % 20 == 0:
                say(f"  {u + 1} updates; last: patched after {fmt_ms(patched[-1]) if got_gen else 'timeout'}")
            time.sleep(a.pause_ms / 1000)
        updates_s = time.monotonic() - t_phase
        # Anything still to come (a late or duplicate rollout) has had the debounce window and more.
        time.sleep(a.settle)
        ls.check_alive()
        after = self.replicasets()
        m1 = ls.metrics()
        cpu = {k: v - cpu0.get(k, 0) for k, v in self.cpu_now().items()}
        updated = {uids[(self.ns(j), f"app-{i:03d}")] for j, i, _ in plan}
        wrong_rolled = []   # Deployments not updated that have a new ReplicaSet
        not_rolled = []     # updated Deployments without exactly one new ReplicaSet
        for key, uid in uids.items():
            new = len(after.get(uid, set()) - before.get(uid, set()))
            if uid in updated and new != 1:
                not_rolled.append((key, new))
            elif uid not in updated and new:
                wrong_rolled.append((key, new))
        rs_before = sum(len(v) for v in before.values())
        rs_after = sum(len(v) for v in after.values())
        status = ls.status()
        executed = sum_metric(m1, 'reloader_reload_executed_total{success="true"}') - \
            sum_metric(m0, 'reloader_reload_executed_total{success="true"}')
        failed = sum_metric(m1, 'reloader_reload_executed_total{success="false"}') - \
            sum_metric(m0, 'reloader_reload_executed_total{success="false"}')

        def stats(xs: list[float]) -> dict:
            if not xs:
                return {"n": 0}
            return {"n": len(xs), "p50_s": percentile(xs, 50), "p99_s": percentile(xs, 99),
                    "max_s": max(xs), "min_s": min(xs)}

        self.results["reload"] = {
            "updates": len(plan), "pause_ms": a.pause_ms, "phase_s": updates_s,
            "to_patched": stats(patched), "to_replicaset": stats(rs_new),
            "missed_patch": missed_patch, "missed_replicaset": missed_rs,
            "replicasets_before": rs_before, "replicasets_after": rs_after,
            "updated_deployments_rolled_once": len(updated) - len(not_rolled),
            "updated_deployments_not_rolled_once": [f"{k[0]}/{k[1]}: {c}" for k, c in not_rolled],
            "other_deployments_rolled": [f"{k[0]}/{k[1]}: {c}" for k, c in wrong_rolled],
            "reloads_executed": executed, "reloads_failed": failed,
            "vmhwm_kib": status.get("VmHWM", 0), "rss_kib": status.get("VmRSS", 0),
            "peak_sampled_kib": ls.peak_sampled, "cpu_s": cpu,
            "lockstep_log_levels": ls.log_levels(),
        }

    def summary(self) -> None:
        r = self.results
        if "ready" not in r:
            return
        rd = r["ready"]
        print("\n== ready", flush=True)
        print(f"  every Deployment baselined after process start  {fmt_s(rd['ready_s'])}")
        print(f"  Deployments rolled while starting               {rd['rolled_at_start']}")
        print(f"  VmHWM / VmRSS at that point                     {mib(rd['vmhwm_kib'])} / {mib(rd['rss_kib'])}")
        print("  CPU time from process start to ready:")
        for k, v in sorted(rd["cpu_s"].items(), key=lambda kv: -kv[1]):
            print(f"    {k:<24} {v:6.2f} s")
        peak = rd["vmhwm_kib"]
        rows = [(f"every Deployment baselined ({rd['deployments']})", fmt_s(rd["ready_s"]), "", "")]
        if "reload" in r:
            rl = r["reload"]
            peak = max(peak, rl["vmhwm_kib"])
            p, q = rl["to_patched"], rl["to_replicaset"]
            print(f"\n== reload: {rl['updates']} Secret updates, {rl['pause_ms']} ms apart, "
                  f"{rl['phase_s']:.1f} s")
            for what, s in (("update -> pod template patched", p), ("update -> new ReplicaSet", q)):
                if s["n"]:
                    print(f"  {what:<32} p50 {fmt_ms(s['p50_s'])}  p99 {fmt_ms(s['p99_s'])}  "
                          f"min {fmt_ms(s['min_s'])}  max {fmt_ms(s['max_s'])}  (n={s['n']})")
            print(f"  timed out (patched / ReplicaSet)  {rl['missed_patch']} / {rl['missed_replicaset']}")
            print(f"  ReplicaSets before / after        {rl['replicasets_before']} / {rl['replicasets_after']}")
            print(f"  updated Deployments with exactly one new ReplicaSet  "
                  f"{rl['updated_deployments_rolled_once']} of {rl['updates']}")
            for line in rl["updated_deployments_not_rolled_once"][:10]:
                print(f"    not rolled once: {line}")
            print(f"  other Deployments with a new ReplicaSet  {len(rl['other_deployments_rolled'])}")
            for line in rl["other_deployments_rolled"][:10]:
                print(f"    rolled without cause: {line}")
            print(f"  reloader_reload_executed_total  {int(rl['reloads_executed'])} succeeded, "
                  f"{int(rl['reloads_failed'])} failed")
            print(f"  VmHWM / VmRSS at the end  {mib(rl['vmhwm_kib'])} / {mib(rl['rss_kib'])} "
                  f"(RSS sampled every 50 ms: peak {mib(rl['peak_sampled_kib'])})")
            print("  Lockstep log lines by level  " +
                  (", ".join(f"{k} {v}" for k, v in sorted(rl["lockstep_log_levels"].items())) or "none"))
            print("  CPU time during the updates:")
            for k, v in sorted(rl["cpu_s"].items(), key=lambda kv: -kv[1]):
                print(f"    {k:<24} {v:6.2f} s")
            correct = (not rl["updated_deployments_not_rolled_once"] and not rl["other_deployments_rolled"]
                       and rd["rolled_at_start"] == 0)
            if p["n"]:
                rows.append(("update -> pod template patched, p50 / p99",
                             f"{fmt_ms(p['p50_s'])} / {fmt_ms(p['p99_s'])}", "target p99 <= 1 s",
                             "MET" if p["p99_s"] <= 1.0 and not rl["missed_patch"] else "MISSED"))
            if q["n"]:
                rows.append(("update -> new ReplicaSet, p50 / p99",
                             f"{fmt_ms(q['p50_s'])} / {fmt_ms(q['p99_s'])}", "", ""))
            rows.append(("only the updated Deployments rolled, once each",
                         "yes" if correct else "NO", "", "MET" if correct else "MISSED"))
        r["peak_vmhwm_kib"] = peak
        rows.append(("Lockstep peak RSS (VmHWM)", mib(peak), "target <= 64 MiB",
                     "MET" if peak <= 64 * 1024 else "MISSED"))
        print("\n== summary", flush=True)
        w = max(len(x[0]) for x in rows)
        for what, value, target, verdict in rows:
            print(f"  {what:<{w}}  {value:>17}  {target:<17} {verdict}".rstrip(), flush=True)


def main() -> int:
    exit_on_sigterm()
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "lockstep" / "target"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of the full sizes (10,000 Secrets, 5,000 ConfigMaps, 1,000 "
                        "Deployments, 50 namespaces); e.g. 0.1 for a quick run")
    p.add_argument("--namespaces", type=int, default=0, help="override the number of namespaces")
    p.add_argument("--secrets", type=int, default=0, help="override the number of Secrets")
    p.add_argument("--configmaps", type=int, default=0, help="override the number of ConfigMaps")
    p.add_argument("--deployments", type=int, default=0, help="override the number of Deployments")
    p.add_argument("--updates", type=int, default=100, help="Secret updates to time")
    p.add_argument("--pause-ms", type=int, default=300, help="pause after each update's rollout")
    p.add_argument("--unused-every", type=int, default=5,
                   help="before every Nth update, also update a Secret no Deployment uses (0: never)")
    p.add_argument("--update-timeout", type=float, default=10.0,
                   help="seconds to wait for each update's patched template and ReplicaSet")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds after the last update before ReplicaSets are counted")
    p.add_argument("--lockstep-arg", action="append", default=[],
                   help="one more argument for `lockstep run` (repeatable)")
    p.add_argument("--workers", type=int, default=16, help="client threads creating objects")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the ready point")
    p.add_argument("--seed", type=int, default=1, help="seed of the sizes and of the choice of updates")
    p.add_argument("--keep-logs", action="store_true", help="keep Lockstep's log")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--lockstep", default=str(Path(target) / "release" / "lockstep"),
                   help="the lockstep binary (default: the release build in CARGO_TARGET_DIR)")
    args = p.parse_args()
    if not 0 < args.scale <= 10:
        fail("--scale must be in (0, 10]")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
