#!/usr/bin/env python3
"""Lockstep's sync benchmark on the local environment (OpenBao -> ExternalSecret -> Secret).

Run it inside a fresh local environment (testenv.py starts and stops everything):

    export CARGO_TARGET_DIR=/root/.cache/lockstep/target
    cargo build --release -p lockstep
    python3 testenv/testenv.py run -- python3 bench/sync_bench.py

It measures, for N ExternalSecrets that each read their own OpenBao KV v2 key:

  idle    `lockstep run` on an empty namespace: peak RSS with nothing to do;
  cold    N ExternalSecrets (and their SecretStore) exist before Lockstep starts: time from
          `lockstep run` process start until all are Ready (Ready=True, reason SecretSynced);
  burst   N more ExternalSecrets created at once while it runs: create->Ready p50/p99/max
          (create time = when the create call returned; Ready time = when a watch on
          ExternalSecrets delivered the Ready status);
  memory  a fresh `lockstep run` on a namespace with MEM_N ExternalSecrets whose OpenBao values
          are 64-256 KiB and UNRELATED unrelated Secrets: peak RSS (VmHWM);
  shared  N ExternalSecrets on KEYS keys (ExternalSecret i reads key i % KEYS, refresh every
          SHARED_REFRESH seconds): OpenBao reads of those keys at the cold start and in one full
          refresh cycle (every ExternalSecret's refreshTime moved on once); the target is one
          read per key for each.

For every phase it counts provider requests twice: from OpenBao's audit log (a file audit
device, one `request` entry per request, grouped by operation and path) and from Lockstep's own
`externalsecret_provider_api_calls_count`; it also reports the kube-apiserver requests
(`apiserver_request_total` deltas, which include the benchmark's own creates and watch) and the
CPU time each process used, so a missed target can be attributed.

OpenBao 2.x refuses to enable audit devices through its API (they are declared in its
configuration file), so the benchmark starts its own OpenBao server, the same `bao` binary and
the same dev mode with TLS as the environment's, with a config file that declares the audit
device, on a free loopback port. Everything else (kube-apiserver, etcd, the OpenBao reviewer
token) comes from the environment. No secret value is printed: only counts, sizes and times.

Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import ctypes
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NS = "lockstep-bench"
NS_MEM = "lockstep-bench-mem"
NS_IDLE = "lockstep-bench-idle"
NS_SHARED = "lockstep-bench-shared"
SA = "bench-reader"
AUTH_MOUNT = "kubernetes-bench"
ROLE = "bench"
STORE = "openbao"
ES_API = "/apis/external-secrets.io/v1"
FIELD_MANAGER = "lockstep-bench"


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> "NoReturn":  # noqa: F821
    say(f"error: {msg}")
    raise SystemExit(1)


def exit_on_sigterm() -> None:
    """Makes SIGTERM (testenv.py stopping the run) unwind like an error, so `finally` blocks stop
    Lockstep and remove the work folder."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def load_env(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            if v.startswith("'") and v.endswith("'"):
                v = v[1:-1].replace("'\"'\"'", "'")
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# HTTP: one keep-alive connection per thread, so concurrent creates do not pay a TLS handshake
# each.


class Http:
    def __init__(self, base: str, cafile: str, headers: dict[str, str]):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.headers = headers
        self.local = threading.local()

    def connect(self, timeout: float = 60.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.connect()
        return conn

    def raw(self, method: str, path: str, body: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError, socket.timeout, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body=None, content_type: str = "application/json"):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        code, raw = self.raw(method, path, data, content_type)
        try:
            return code, (json.loads(raw) if raw else {})
        except ValueError:
            return code, {"raw": raw[:300].decode(errors="replace")}

    def must(self, method: str, path: str, body=None, ok=(200, 201, 202, 204), **kw):
        code, out = self.call(method, path, body, **kw)
        if code not in ok:
            fail(f"{method} {path}: HTTP {code}: {str(out)[:300]}")
        return out


def parallel(fn, items, workers: int) -> list:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------------------------
# processes


def _pdeathsig() -> None:
    """Runs in the child before exec: die with the benchmark, even when it is SIGKILLed."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(pair: bool = False) -> int:
    """A free loopback port; with pair=True, port + 1 is free too."""
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if not pair:
            s.close()
            return port
        s2 = socket.socket()
        try:
            s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            s.close()
            s2.close()
    fail("no free loopback port")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmHWM, VmRSS, RssAnon, RssFile...)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            v = v.strip()
            if v.endswith(" kB"):
                out[k] = int(v[:-3])
    except OSError:
        pass
    return out


def stop_process(p: subprocess.Popen, grace: float = 15.0) -> None:
    if p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


class OpenBao:
    """A dev-mode OpenBao with TLS and a file audit device declared in its configuration."""

    def __init__(self, bao_bin: Path, work: Path):
        self.dir = work / "openbao"
        (self.dir / "home").mkdir(parents=True)
        (self.dir / "tls").mkdir()
        self.audit_log = self.dir / "audit.log"
        self.token = "root-" + os.urandom(12).hex()
        self.port = free_port(pair=True)  # the cluster listener takes port + 1
        config = self.dir / "audit.hcl"
        config.write_text(f'audit "file" "bench" {{\n  options {{\n'
                          f'    file_path = "{self.audit_log}"\n  }}\n}}\n')
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            [str(bao_bin), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={self.dir / 'tls'}",
             f"-dev-listen-address=127.0.0.1:{self.port}", f"-dev-root-token-id={self.token}",
             f"-config={config}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(self.dir / "home")},
            start_new_session=True, preexec_fn=_pdeathsig)
        self.addr = f"https://127.0.0.1:{self.port}"
        self.cacert = self.dir / "tls" / "vault-ca.pem"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                fail(f"OpenBao exited with {self.proc.returncode}; see {self.dir / 'server.log'}")
            if self.cacert.exists():
                try:
                    self.http = Http(self.addr, str(self.cacert), {"X-Vault-Token": self.token})
                    if self.http.call("GET", "/v1/sys/health")[0] == 200 and self.audit_log.exists():
                        break
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            if time.monotonic() > deadline:
                fail("OpenBao did not start within 60s")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class AuditCounter:
    """Counts OpenBao audit `request` entries per (operation, path pattern) since a mark."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> dict[tuple[str, str], dict[str, int]]:
        counts: dict[tuple[str, str], dict[str, int]] = {}
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                req = entry.get("request") or {}
                key = (req.get("operation", "?"), pattern(req.get("path", "?")))
                c = counts.setdefault(key, {"requests": 0, "errors": 0})
                if entry.get("type") == "request":
                    c["requests"] += 1
                elif entry.get("type") == "response" and entry.get("error"):
                    c["errors"] += 1
        return counts


def pattern(path: str) -> str:
    """secret/data/bench/cold/00042 -> secret/data/bench/cold/*"""
    return re.sub(r"/\d+$", "/*", path)


# --------------------------------------------------------------------------------------------
# Lockstep


class Lockstep:
    def __init__(self, binary: Path, kubeconfig: str, namespace: str | None, concurrency: int,
                 log_path: Path, extra_args: list[str]):
        self.metrics_port = free_port()
        health_port = free_port()
        argv = [str(binary), "run", "--concurrency", str(concurrency),
                "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
                "--health-addr", f"127.0.0.1:{health_port}", *extra_args]
        if namespace:
            argv += ["--namespace", namespace]
        self.log_path = log_path
        self.log = open(log_path, "wb")
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        env["KUBECONFIG"] = kubeconfig
        if os.environ.get("BENCH_RUST_LOG"):
            env["RUST_LOG"] = os.environ["BENCH_RUST_LOG"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_pdeathsig)
        self.pid = self.proc.pid
        self.peak_sampled = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling and self.proc.poll() is None:
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.peak_sampled = max(self.peak_sampled, rss)
            time.sleep(0.05)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
            fail(f"lockstep exited with {self.proc.returncode}; last log lines:\n" + "\n".join(tail))

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its full series text (name{labels})."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return parse_prometheus(text)

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def stop(self) -> None:
        self._sampling = False
        stop_process(self.proc)
        self.log.close()

    def log_levels(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = re.search(r'"level":"(\w+)"', line) or re.search(r"\b(TRACE|DEBUG|INFO|WARN|ERROR)\b", line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts


def parse_prometheus(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            pass
    return out


def labels_of(series: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))


def sum_metric(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def provider_calls(samples: dict[str, float]) -> dict[tuple[str, str, str], float]:
    out = {}
    for k, v in samples.items():
        if k.startswith("externalsecret_provider_api_calls_count{"):
            lab = labels_of(k)
            out[(lab.get("provider", ""), lab.get("call", ""), lab.get("status", ""))] = v
    return out


# --------------------------------------------------------------------------------------------
# watching ExternalSecrets


def is_ready(es: dict) -> tuple[bool, str]:
    for c in (es.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return (c.get("status") == "True" and c.get("reason") == "SecretSynced",
                    f"{c.get('status')}/{c.get('reason')}")
    return False, "no condition"


class ReadyWatch:
    """Records when each ExternalSecret of a namespace is first seen Ready=True/SecretSynced."""

    def __init__(self, kube: Http, namespace: str):
        self.kube = kube
        self.ns = namespace
        self.ready: dict[str, float] = {}
        self.last: dict[str, str] = {}
        self.events = 0
        self.cond = threading.Condition()
        self.stopping = False
        self.conn: http.client.HTTPSConnection | None = None
        code, lst = kube.call("GET", f"{ES_API}/namespaces/{namespace}/externalsecrets?limit=500")
        if code != 200:
            fail(f"listing ExternalSecrets: HTTP {code}")
        if lst.get("metadata", {}).get("continue"):
            fail("start the watch before creating more than 500 ExternalSecrets")
        now = time.monotonic()
        for es in lst.get("items", []):
            self._see(es, now)
        self.rv = lst["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _see(self, es: dict, now: float) -> None:
        name = es["metadata"]["name"]
        ok, state = is_ready(es)
        self.last[name] = state
        if ok and name not in self.ready:
            self.ready[name] = now

    def _run(self) -> None:
        failures = 0
        while not self.stopping and failures < 20:
            path = (f"{ES_API}/namespaces/{self.ns}/externalsecrets?watch=true"
                    f"&allowWatchBookmarks=true&timeoutSeconds=1800&resourceVersion={self.rv}")
            self.conn = conn = self.kube.connect(timeout=3600)
            try:
                conn.request("GET", path, headers=self.kube.headers)
                resp = conn.getresponse()
                if resp.status != 200:
                    failures += 1
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
                        failures += 1
                        break
                    self.rv = obj.get("metadata", {}).get("resourceVersion", self.rv)
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        with self.cond:
                            self.events += 1
                            self._see(obj, now)
                            self.cond.notify_all()
            except (OSError, http.client.HTTPException, ValueError):
                if self.stopping:
                    return
                failures += 1
                time.sleep(0.2)
            finally:
                conn.close()

    def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.ready for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def stop(self) -> None:
        self.stopping = True
        if self.conn is not None and self.conn.sock is not None:
            try:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)


# --------------------------------------------------------------------------------------------
# measurement helpers


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def apiserver_requests(kube: Http) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total and the sum of apiserver_request_duration_seconds, per verb and
    resource: (what, verb, resource) -> value, what being "count" or "seconds"."""
    code, raw = kube.raw("GET", "/metrics")
    if code != 200:
        return {}
    out: dict[tuple[str, str, str], float] = {}
    for series, value in parse_prometheus(raw.decode()).items():
        if series.startswith("apiserver_request_total{"):
            what = "count"
        elif series.startswith("apiserver_request_duration_seconds_sum{"):
            what = "seconds"
        else:
            continue
        lab = labels_of(series)
        resource = lab.get("resource", "")
        if lab.get("subresource"):
            resource += "/" + lab["subresource"]
        key = (what, lab.get("verb", ""), resource)
        out[key] = out.get(key, 0) + value
    return out


class Snapshot:
    """Counters at one instant, to subtract from a later one."""

    def __init__(self, bench: "Bench", lockstep: Lockstep | None):
        self.t = time.monotonic()
        self.cpu = bench.cpu_now(lockstep)
        self.api = apiserver_requests(bench.kube)
        self.metrics = lockstep.metrics() if lockstep else {}


class Phase:
    def __init__(self, name: str):
        self.name = name
        self.rows: list[tuple[str, str]] = []
        self.sections: list[tuple[str, list[str]]] = []

    def row(self, what: str, value: str) -> None:
        self.rows.append((what, value))

    def render(self) -> str:
        width = max([len(w) for w, _ in self.rows] + [10])
        out = [f"== {self.name}"]
        out += [f"  {w:<{width}}  {v}" for w, v in self.rows]
        for title, lines in self.sections:
            out.append(f"  {title}")
            out += [f"    {line}" for line in lines]
        return "\n".join(out)


def fmt_s(x: float) -> str:
    return f"{x:.2f} s"


def fmt_ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


# --------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        env_file = os.environ.get("LOCKSTEP_TESTENV")
        if not env_file:
            fail("LOCKSTEP_TESTENV is not set: run this through "
                 "`python3 testenv/testenv.py run -- python3 bench/sync_bench.py`")
        self.env = load_env(env_file)
        self.binary = Path(args.lockstep)
        if not self.binary.exists():
            fail(f"{self.binary} does not exist: build it with "
                 "`CARGO_TARGET_DIR=/root/.cache/lockstep/target cargo build --release -p lockstep`")
        self.kube = Http(self.env["LOCKSTEP_KUBE_SERVER"], self.env["LOCKSTEP_KUBE_CA"],
                         {"Authorization": f"Bearer {self.env['LOCKSTEP_ADMIN_TOKEN']}"})
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.work = Path(tempfile.mkdtemp(prefix="lockstep-bench-", dir=base))
        self.bao: OpenBao | None = None
        self.lockstep: Lockstep | None = None
        self.phases: list[Phase] = []
        self.results: dict = {}
        # The environment's servers, for CPU accounting.
        self.env_pids: dict[str, int] = {}
        pids = Path(self.env["LOCKSTEP_TESTENV_DIR"]) / "pids"
        for line in pids.read_text().splitlines() if pids.exists() else []:
            pid, name = line.split(maxsplit=1)
            if name in ("kube-apiserver", "etcd", "kube-controller-manager"):
                self.env_pids[name] = int(pid)

    # ---- accounting

    def cpu_now(self, lockstep: Lockstep | None) -> dict[str, float]:
        out = {name: cpu_seconds(pid) or 0.0 for name, pid in self.env_pids.items()}
        if self.bao:
            out["openbao (bench)"] = cpu_seconds(self.bao.proc.pid) or 0.0
        if lockstep:
            out["lockstep"] = cpu_seconds(lockstep.pid) or 0.0
        t = os.times()
        out["benchmark (python)"] = t.user + t.system
        return out

    def report_counts(self, phase: Phase, before: Snapshot, after: Snapshot,
                      audit: AuditCounter, n: int) -> dict:
        wall = after.t - before.t
        cpu = {k: after.cpu.get(k, 0) - before.cpu.get(k, 0) for k in after.cpu}
        lines = [f"{k:<24} {v:6.2f} s  ({v / wall * 100:3.0f}% of one core)"
                 for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])]
        lines.append(f"{'total':<24} {sum(cpu.values()):6.2f} s  over {wall:.2f} s wall "
                     f"({os.cpu_count()} cores)")
        phase.sections.append(("CPU time by process during the phase:", lines))

        counts = audit.since_mark()
        total_req = sum(c["requests"] for c in counts.values())
        lines = [f"{c['requests']:6d}  {op:<7} {path}" + (f"   ({c['errors']} errors)" if c["errors"] else "")
                 for (op, path), c in sorted(counts.items(), key=lambda kv: -kv[1]["requests"])]
        lines.append(f"{total_req:6d}  total ({total_req / n:.2f} per ExternalSecret)")
        phase.sections.append(("OpenBao requests (audit log):", lines))

        calls_before = provider_calls(before.metrics)
        calls_after = provider_calls(after.metrics)
        lines = []
        for key, v in sorted(calls_after.items()):
            d = v - calls_before.get(key, 0)
            if d:
                lines.append(f"{int(d):6d}  provider={key[0]} call={key[1]} status={key[2]}")
        phase.sections.append(("Lockstep externalsecret_provider_api_calls_count:", lines or ["(none)"]))

        syncs = sum_metric(after.metrics, "externalsecret_sync_calls_total") - \
            sum_metric(before.metrics, "externalsecret_sync_calls_total")
        sync_errors = sum_metric(after.metrics, "externalsecret_sync_calls_error") - \
            sum_metric(before.metrics, "externalsecret_sync_calls_error")
        phase.row("reconciles (externalsecret_sync_calls_total)",
                  f"{int(syncs)} ({syncs / n:.2f} per ExternalSecret), {int(sync_errors)} failed")

        delta = {k: after.api.get(k, 0) - before.api.get(k, 0) for k in after.api}
        api = {(verb, res): v for (what, verb, res), v in delta.items() if what == "count" and v > 0}
        total_api = sum(api.values())
        lines = []
        for (verb, res), v in sorted(api.items(), key=lambda kv: -kv[1]):
            if v < 2:
                continue
            line = f"{int(v):6d}  {verb:<6} {res:<28}"
            if verb not in ("WATCH", "CONNECT"):
                line += f" mean {delta.get(('seconds', verb, res), 0) / v * 1000:6.1f} ms in the apiserver"
            lines.append(line.rstrip())
        lines.append(f"{int(total_api):6d}  total, all clients ({total_api / n:.2f} per ExternalSecret, "
                     f"{total_api / wall:.0f}/s)")
        phase.sections.append(("kube-apiserver requests (apiserver_request_total delta; includes "
                               "the benchmark's own creates, watches and /metrics reads):", lines))
        return {"wall_s": wall, "cpu_s": cpu, "openbao_requests": total_req,
                "openbao_by_path": {f"{op} {p}": c["requests"] for (op, p), c in counts.items()},
                "reconciles": syncs, "reconcile_errors": sync_errors,
                "apiserver_requests": total_api}

    # ---- setup

    def apply_crds(self) -> None:
        for f in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
            _, plural = f.stem.split("_", 1)
            group = f.stem.split("_", 1)[0]
            name = f"{plural}.{group}"
            text = f.read_text()
            # The files start with a comment and a document marker; send the one document.
            text = text.split("\n---\n", 1)[1] if "\n---\n" in text else text
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            self.kube.must("PATCH", f"{path}?fieldManager={FIELD_MANAGER}&force=true",
                           text.encode(), content_type="application/apply-patch+yaml")
            deadline = time.monotonic() + 60
            while True:
                crd = self.kube.must("GET", path)
                if any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in (crd.get("status") or {}).get("conditions") or []):
                    break
                if time.monotonic() > deadline:
                    fail(f"CRD {name} not established")
                time.sleep(0.1)

    def namespace(self, ns: str) -> None:
        self.kube.must("POST", "/api/v1/namespaces",
                       {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.kube.must("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                       {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA}})
        self.kube.must("POST", f"{ES_API}/namespaces/{ns}/secretstores", {
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": {"name": STORE},
            "spec": {"provider": {"openBao": {
                "server": self.bao.addr, "path": "secret", "version": "v2",
                "caBundle": base64.b64encode(self.bao.cacert.read_bytes()).decode(),
                "auth": {"kubernetes": {"path": AUTH_MOUNT, "role": ROLE,
                                        "serviceAccountRef": {"name": SA, "audiences": ["openbao"]}}}}}}})

    def setup_openbao(self) -> None:
        bao = self.bao.http
        policy = ('path "secret/data/bench/*" { capabilities = ["read"] }\n'
                  'path "secret/metadata/bench/*" { capabilities = ["read", "list"] }\n'
                  'path "sys/mounts/secret" { capabilities = ["read"] }\n')
        bao.must("PUT", "/v1/sys/policies/acl/bench-read", {"policy": policy})
        bao.must("POST", f"/v1/sys/auth/{AUTH_MOUNT}", {"type": "kubernetes"})
        bao.must("POST", f"/v1/auth/{AUTH_MOUNT}/config", {
            "kubernetes_host": self.env["LOCKSTEP_KUBE_SERVER"],
            "kubernetes_ca_cert": Path(self.env["LOCKSTEP_KUBE_CA"]).read_text(),
            "token_reviewer_jwt": self.env["LOCKSTEP_OPENBAO_REVIEWER_JWT"]})
        bao.must("POST", f"/v1/auth/{AUTH_MOUNT}/role/{ROLE}", {
            "bound_service_account_names": [SA],
            "bound_service_account_namespaces": [NS, NS_MEM, NS_IDLE, NS_SHARED],
            "audience": "openbao", "token_policies": ["bench-read"], "token_ttl": "1h"})

    def write_values(self, prefix: str, n: int, size_of) -> int:
        """Writes secret/bench/<prefix>/<i> = {"value": <size_of(i) random characters>}."""
        def put(i: int) -> int:
            size = size_of(i)
            value = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]
            self.bao.http.must("POST", f"/v1/secret/data/bench/{prefix}/{i:05d}",
                               {"data": {"value": value}})
            return size
        return sum(parallel(put, range(n), self.args.workers))

    def es_body(self, name: str, key: str) -> dict:
        return {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                "metadata": {"name": name},
                "spec": {"refreshInterval": "1h",
                         "secretStoreRef": {"name": STORE, "kind": "SecretStore"},
                         "target": {"name": name},
                         "dataFrom": [{"extract": {"key": key}}]}}

    def create_es(self, ns: str, prefix: str, n: int) -> dict[str, float]:
        """Creates n ExternalSecrets at once; returns when each create call returned."""
        def create(i: int) -> tuple[str, float]:
            name = f"{prefix}-{i:05d}"
            code, out = self.kube.call("POST", f"{ES_API}/namespaces/{ns}/externalsecrets",
                                       self.es_body(name, f"bench/{prefix}/{i:05d}"))
            if code not in (201, 409):
                fail(f"creating ExternalSecret {name}: HTTP {code}: {str(out)[:300]}")
            return name, time.monotonic()
        return dict(parallel(create, range(n), self.args.workers))

    def start_lockstep(self, namespace: str | None, label: str) -> Lockstep:
        return Lockstep(self.binary, self.env["KUBECONFIG"], namespace, self.args.concurrency,
                        self.work / f"lockstep-{label}.log", self.args.lockstep_arg)

    def settle(self, lockstep: Lockstep, quiet: float = 1.0, limit: float = 15.0) -> float:
        """Waits until Lockstep's reconcile count stops moving for `quiet` seconds."""
        start = time.monotonic()
        last = sum_metric(lockstep.metrics(), "externalsecret_sync_calls_total")
        still_since = time.monotonic()
        while time.monotonic() - start < limit:
            time.sleep(0.2)
            now = sum_metric(lockstep.metrics(), "externalsecret_sync_calls_total")
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                break
        return time.monotonic() - start

    # ---- phases

    def phase_idle(self) -> None:
        phase = Phase("idle: `lockstep run` on an empty namespace, 3 s")
        self.namespace(NS_IDLE)
        ls = self.start_lockstep(NS_IDLE, "idle")
        time.sleep(3)
        ls.check_alive()
        st = ls.status()
        ls.stop()
        phase.row("peak RSS (VmHWM)", mib(st.get("VmHWM", 0)))
        phase.row("RSS now (anon + file)", f"{mib(st.get('VmRSS', 0))} "
                  f"({mib(st.get('RssAnon', 0))} anon, {mib(st.get('RssFile', 0))} file)")
        self.results["idle"] = {"vmhwm_kib": st.get("VmHWM", 0), "rss_kib": st.get("VmRSS", 0)}
        self.phases.append(phase)
        print(phase.render(), flush=True)

    def phase_cold_and_burst(self) -> None:
        n = self.args.n
        audit = AuditCounter(self.bao.audit_log)
        self.namespace(NS)
        say(f"writing {2 * n} small OpenBao values and creating {n} ExternalSecrets")
        self.write_values("cold", n, lambda i: 64)
        self.write_values("burst", n, lambda i: 64)
        watch = ReadyWatch(self.kube, NS)
        cold_names = list(self.create_es(NS, "cold", n))

        # ---- cold start
        phase = Phase(f"cold start: {n} ExternalSecrets exist, then `lockstep run` starts "
                      f"(--concurrency {self.args.concurrency})")
        audit.mark()
        before = Snapshot(self, None)
        before.metrics = {}
        ls = self.lockstep = self.start_lockstep(None if self.args.all_namespaces else NS, "main")
        t0 = ls.started
        ok = watch.wait(cold_names, self.args.timeout)
        t_all = time.monotonic()
        ls.check_alive()
        if not ok:
            missing = [x for x in cold_names if x not in watch.ready]
            states: dict[str, int] = {}
            for name in missing:
                states[watch.last.get(name, "not seen")] = states.get(watch.last.get(name, "not seen"), 0) + 1
            fail(f"cold start: {len(missing)} of {n} not Ready after {self.args.timeout}s: {states}")
        times = sorted(watch.ready[x] - t0 for x in cold_names)
        settled = self.settle(ls)
        after = Snapshot(self, ls)
        phase.row("all Ready after process start", fmt_s(t_all - t0))
        phase.row("first / 50% / 90% Ready at", " / ".join(
            fmt_s(x) for x in (times[0], percentile(times, 50), percentile(times, 90))))
        phase.row("throughput after the first Ready",
                  f"{(n - 1) / max(times[-1] - times[0], 1e-9):.0f} ExternalSecrets/s")
        phase.row("settled (no reconcile for 1 s) after", fmt_s(settled))
        counts = self.report_counts(phase, before, after, audit, n)
        st = ls.status()
        phase.row("Lockstep RSS now / peak so far", f"{mib(st.get('VmRSS', 0))} / {mib(st.get('VmHWM', 0))}")
        self.results["cold"] = {"n": n, "all_ready_s": t_all - t0, "first_ready_s": times[0],
                                "p50_ready_s": percentile(times, 50), **counts}
        self.phases.append(phase)
        print(phase.render(), flush=True)

        # ---- burst
        phase = Phase(f"burst: {n} ExternalSecrets created at once while Lockstep runs "
                      f"({self.args.workers} client threads)")
        audit.mark()
        before = Snapshot(self, ls)
        t_start = time.monotonic()
        created = self.create_es(NS, "burst", n)
        t_created = time.monotonic()
        ok = watch.wait(list(created), self.args.timeout)
        t_all = time.monotonic()
        ls.check_alive()
        if not ok:
            missing = [x for x in created if x not in watch.ready]
            fail(f"burst: {len(missing)} of {n} not Ready after {self.args.timeout}s")
        lat = [watch.ready[x] - created[x] for x in created]
        settled = self.settle(ls)
        after = Snapshot(self, ls)
        phase.row("creates took", f"{fmt_s(t_created - t_start)} ({n / (t_created - t_start):.0f}/s)")
        phase.row("create->Ready p50", fmt_ms(percentile(lat, 50)))
        phase.row("create->Ready p99", fmt_ms(percentile(lat, 99)))
        phase.row("create->Ready min / max", f"{fmt_ms(min(lat))} / {fmt_ms(max(lat))}")
        phase.row("first create -> all Ready", fmt_s(t_all - t_start))
        phase.row("timing", "create = create call returned; Ready = watch event received "
                  "(same clock; ~1 ms resolution, plus the benchmark's own scheduling)")
        counts = self.report_counts(phase, before, after, audit, n)
        st = ls.status()
        phase.row("Lockstep RSS now / peak so far", f"{mib(st.get('VmRSS', 0))} / {mib(st.get('VmHWM', 0))}")
        es = self.kube.must("GET", f"{ES_API}/namespaces/{NS}/externalsecrets/burst-00000")
        mf = len(json.dumps(es["metadata"].get("managedFields") or []))
        phase.row("one synced ExternalSecret as JSON", f"{len(json.dumps(es))} bytes, of which "
                  f"{mf} bytes managedFields ({len(es['metadata'].get('managedFields') or [])} managers)")
        self.results["burst"] = {"n": n, "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
                                 "max_s": max(lat), "all_ready_s": t_all - t_start, **counts}
        levels = ls.log_levels()
        phase.row("Lockstep log lines by level (both phases)",
                  ", ".join(f"{k} {v}" for k, v in sorted(levels.items())) or "none")
        self.results["main_log_levels"] = levels
        self.phases.append(phase)
        print(phase.render(), flush=True)
        ls.stop()
        self.lockstep = None
        watch.stop()

    def phase_memory(self) -> None:
        n, unrelated = self.args.mem_n, self.args.unrelated
        lo, hi = self.args.mem_min_kib, self.args.mem_max_kib
        audit = AuditCounter(self.bao.audit_log)
        self.namespace(NS_MEM)
        say(f"memory scenario: {unrelated} unrelated Secrets of {self.args.unrelated_kib} KiB, "
            f"{n} OpenBao values of {lo}-{hi} KiB, {n} ExternalSecrets")

        blob = base64.b64encode(os.urandom(self.args.unrelated_kib * 1024)).decode()

        def unrelated_secret(i: int) -> None:
            code, out = self.kube.call("POST", f"/api/v1/namespaces/{NS_MEM}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": f"unrelated-{i:05d}", "labels": {"app": "unrelated"}},
                "data": {"blob": blob}})
            if code not in (201, 409):
                fail(f"creating an unrelated Secret: HTTP {code}: {str(out)[:200]}")

        t = time.monotonic()
        parallel(unrelated_secret, range(unrelated), self.args.workers)
        say(f"  {unrelated} unrelated Secrets in {time.monotonic() - t:.1f}s")
        t = time.monotonic()

        def size_of(i: int) -> int:
            return (lo + (hi - lo) * i // max(n - 1, 1)) * 1024
        total = self.write_values("mem", n, size_of)
        say(f"  {n} OpenBao values ({total / 2**20:.0f} MiB) in {time.monotonic() - t:.1f}s")
        watch = ReadyWatch(self.kube, NS_MEM)
        names = list(self.create_es(NS_MEM, "mem", n))

        phase = Phase(f"memory: {n} ExternalSecrets with {lo}-{hi} KiB values "
                      f"({total / 2**20:.0f} MiB in total) and {unrelated} unrelated "
                      f"{self.args.unrelated_kib} KiB Secrets in the namespace; fresh `lockstep run`")
        audit.mark()
        before = Snapshot(self, None)
        ls = self.lockstep = self.start_lockstep(None if self.args.all_namespaces else NS_MEM, "mem")
        ok = watch.wait(names, self.args.timeout)
        t_all = time.monotonic()
        ls.check_alive()
        if not ok:
            missing = [x for x in names if x not in watch.ready]
            fail(f"memory: {len(missing)} of {n} not Ready after {self.args.timeout}s")
        st_ready = ls.status()
        self.settle(ls)
        time.sleep(3)
        after = Snapshot(self, ls)
        st = ls.status()
        phase.row("all Ready after process start", fmt_s(t_all - ls.started))
        phase.row("peak RSS (VmHWM)", mib(st.get("VmHWM", 0)))
        phase.row("peak RSS sampled every 50 ms", mib(ls.peak_sampled))
        phase.row("RSS when all were Ready", mib(st_ready.get("VmRSS", 0)))
        phase.row("RSS after settling + 3 s (anon + file)", f"{mib(st.get('VmRSS', 0))} "
                  f"({mib(st.get('RssAnon', 0))} anon, {mib(st.get('RssFile', 0))} file)")
        phase.row("threads", str(len(os.listdir(f"/proc/{ls.pid}/task"))))
        phase.row("Lockstep log lines by level",
                  ", ".join(f"{k} {v}" for k, v in sorted(ls.log_levels().items())) or "none")
        counts = self.report_counts(phase, before, after, audit, n)
        self.results["memory"] = {"n": n, "unrelated": unrelated, "values_mib": total / 2**20,
                                  "all_ready_s": t_all - ls.started, "vmhwm_kib": st.get("VmHWM", 0),
                                  "rss_after_kib": st.get("VmRSS", 0), **counts}
        self.phases.append(phase)
        print(phase.render(), flush=True)
        ls.stop()
        self.lockstep = None
        watch.stop()

    def phase_shared(self) -> None:
        n, keys, refresh = self.args.n, self.args.keys, self.args.shared_refresh
        audit = AuditCounter(self.bao.audit_log)
        self.namespace(NS_SHARED)
        say(f"writing {keys} OpenBao values and creating {n} ExternalSecrets that read them")
        self.write_values("shared", keys, lambda i: 64)

        def create(i: int) -> str:
            name = f"shared-{i:05d}"
            body = self.es_body(name, f"bench/shared/{i % keys:05d}")
            body["spec"]["refreshInterval"] = f"{refresh}s"
            code, out = self.kube.call("POST", f"{ES_API}/namespaces/{NS_SHARED}/externalsecrets", body)
            if code not in (201, 409):
                fail(f"creating ExternalSecret {name}: HTTP {code}: {str(out)[:300]}")
            return name
        names = parallel(create, range(n), self.args.workers)
        # Object timestamps are whole seconds: a sync shares only reads that started at least a
        # second after its ExternalSecret last changed.
        time.sleep(1.5)

        def key_reads() -> tuple[int, int]:
            counts = audit.since_mark()
            reads = [c["requests"] for (op, path), c in counts.items()
                     if op == "read" and path == "secret/data/bench/shared/*"]
            return sum(reads), sum(c["requests"] for c in counts.values())

        def refresh_times() -> dict[str, str]:
            lst = self.kube.must("GET", f"{ES_API}/namespaces/{NS_SHARED}/externalsecrets")
            return {es["metadata"]["name"]: (es.get("status") or {}).get("refreshTime", "")
                    for es in lst.get("items", [])}

        phase = Phase(f"shared keys: {n} ExternalSecrets on {keys} OpenBao keys "
                      f"(refreshInterval {refresh}s, --concurrency {self.args.concurrency})")
        audit.mark()
        ls = self.lockstep = self.start_lockstep(NS_SHARED, "shared")
        t0 = ls.started
        deadline = time.monotonic() + self.args.timeout
        while True:
            cold = refresh_times()
            if len(cold) == n and all(cold.values()):
                break
            ls.check_alive()
            if time.monotonic() > deadline:
                fail(f"shared keys: {sum(1 for v in cold.values() if v)} of {n} synced "
                     f"after {self.args.timeout}s")
            time.sleep(0.5)
        t_cold = time.monotonic() - t0
        cold_reads, cold_all = key_reads()
        if t_cold >= refresh / 2:
            # Refreshes would already be due: the cold count would hold refresh reads and the
            # cycle would start before it is measured.
            fail(f"shared keys: the cold start took {t_cold:.1f}s, too close to the refresh "
                 f"interval ({refresh}s); raise --shared-refresh")
        phase.row("all synced after process start", fmt_s(t_cold))
        phase.row("OpenBao reads of the keys, cold start",
                  f"{cold_reads} for {n} ExternalSecrets on {keys} keys (all requests {cold_all})")
        newest = max(cold.values())
        audit.mark()
        t1 = time.monotonic()
        deadline = t1 + refresh * 3 + self.args.timeout
        while True:
            now = refresh_times()
            if len(now) == n and all(v > newest for v in now.values()):
                break
            ls.check_alive()
            if time.monotonic() > deadline:
                fail("shared keys: the refresh cycle did not complete")
            time.sleep(0.5)
        cycle_reads, cycle_all = key_reads()
        phase.row("OpenBao reads of the keys, one full refresh cycle",
                  f"{cycle_reads} (all requests {cycle_all}; the cycle took "
                  f"{fmt_s(time.monotonic() - t1)} to complete)")
        phase.row("distinct refreshTimes after the cycle", f"{len(set(now.values()))} for {keys} keys")
        self.results["shared"] = {"n": n, "keys": keys, "refresh_s": refresh, "synced_s": t_cold,
                                  "cold_reads": cold_reads, "cycle_reads": cycle_reads,
                                  "cold_requests": cold_all, "cycle_requests": cycle_all}
        self.phases.append(phase)
        print(phase.render(), flush=True)
        ls.stop()
        self.lockstep = None

    def run(self) -> int:
        a = self.args
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.binary.stat().st_mtime))
        print(f"Lockstep sync benchmark: {self.binary} (built {built}; repository HEAD {head})", flush=True)
        print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB; "
              f"load average at start {os.getloadavg()[0]:.2f}; kube-apiserver "
              f"{self.env.get('LOCKSTEP_KUBE_VERSION')}", flush=True)
        print(f"N={a.n} MEM_N={a.mem_n} UNRELATED={a.unrelated} --concurrency {a.concurrency}"
              + (f" extra lockstep args: {' '.join(a.lockstep_arg)}" if a.lockstep_arg else ""), flush=True)
        try:
            self.bao = OpenBao(Path(self.env["LOCKSTEP_VENV"]) / "bin" / "bao", self.work)
            say(f"OpenBao (with a file audit device) at {self.bao.addr}")
            self.apply_crds()
            self.setup_openbao()
            if "idle" in a.phases:
                self.phase_idle()
            if "sync" in a.phases:
                self.phase_cold_and_burst()
            if "memory" in a.phases:
                self.phase_memory()
            if "shared" in a.phases:
                self.phase_shared()
        finally:
            if self.lockstep:
                self.lockstep.stop()
            if self.bao:
                self.bao.stop()
            if a.keep_logs:
                say(f"logs kept in {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        self.summary()
        if a.json:
            Path(a.json).write_text(json.dumps(self.results, indent=2) + "\n")
        return 0

    def summary(self) -> None:
        r = self.results
        print("\n== summary", flush=True)
        rows = []
        if "cold" in r:
            c = r["cold"]
            rows.append((f"cold start, {c['n']} ExternalSecrets Ready", fmt_s(c["all_ready_s"]),
                         "target <= 10 s", "MET" if c["all_ready_s"] <= 10 else "MISSED"))
        if "burst" in r:
            b = r["burst"]
            rows.append((f"burst of {b['n']}, create->Ready p50 / p99",
                         f"{fmt_ms(b['p50_s'])} / {fmt_ms(b['p99_s'])}", "", ""))
            rows.append(("OpenBao requests per ExternalSecret (cold / burst)",
                         f"{r['cold']['openbao_requests'] / r['cold']['n']:.2f} / "
                         f"{b['openbao_requests'] / b['n']:.2f}", "", ""))
            rows.append(("apiserver requests per ExternalSecret (cold / burst)",
                         f"{r['cold']['apiserver_requests'] / r['cold']['n']:.1f} / "
                         f"{b['apiserver_requests'] / b['n']:.1f}", "", ""))
        if "idle" in r:
            rows.append(("idle peak RSS", mib(r["idle"]["vmhwm_kib"]), "", ""))
        if "shared" in r:
            sh = r["shared"]
            for what, reads in (("cold start", sh["cold_reads"]), ("refresh cycle", sh["cycle_reads"])):
                rows.append((f"OpenBao reads, {sh['n']} ExternalSecrets on {sh['keys']} keys, {what}",
                             str(reads), f"target <= {sh['keys']}",
                             "MET" if reads <= sh["keys"] else "MISSED"))
        if "memory" in r:
            m = r["memory"]
            rows.append((f"memory scenario peak RSS ({m['n']} x 64-256 KiB, {m['unrelated']} unrelated)",
                         mib(m["vmhwm_kib"]), "target <= 64 MiB",
                         "MET" if m["vmhwm_kib"] <= 64 * 1024 else "MISSED"))
        w = max(len(x[0]) for x in rows)
        for what, value, target, verdict in rows:
            print(f"  {what:<{w}}  {value:>17}  {target:<17} {verdict}".rstrip(), flush=True)


def main() -> int:
    exit_on_sigterm()
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "lockstep" / "target"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="ExternalSecrets in the cold start and in the burst")
    p.add_argument("--mem-n", type=int, default=1000, help="ExternalSecrets in the memory scenario")
    p.add_argument("--mem-min-kib", type=int, default=64)
    p.add_argument("--mem-max-kib", type=int, default=256)
    p.add_argument("--unrelated", type=int, default=10000, help="unrelated Secrets in the memory scenario")
    p.add_argument("--unrelated-kib", type=int, default=4, help="size of each unrelated Secret's value")
    p.add_argument("--concurrency", type=int, default=8, help="`lockstep run --concurrency`")
    p.add_argument("--lockstep-arg", action="append", default=[],
                   help="one more argument for `lockstep run` (repeatable)")
    p.add_argument("--all-namespaces", action="store_true",
                   help="run Lockstep on all namespaces instead of --namespace <bench namespace>")
    p.add_argument("--workers", type=int, default=16, help="client threads creating objects")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for Ready in each phase")
    p.add_argument("--phases", default="idle,sync,memory",
                   help="comma-separated phases to run: idle, sync (cold start + burst), memory, shared")
    p.add_argument("--keys", type=int, default=100, help="distinct OpenBao keys in the shared phase")
    p.add_argument("--shared-refresh", type=int, default=60,
                   help="refreshInterval (seconds) of the shared phase's ExternalSecrets")
    p.add_argument("--keep-logs", action="store_true", help="keep Lockstep's and OpenBao's logs")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--lockstep", default=str(Path(target) / "release" / "lockstep"),
                   help="the lockstep binary (default: the release build in CARGO_TARGET_DIR)")
    args = p.parse_args()
    args.phases = set(args.phases.split(","))
    if not args.phases or not args.phases <= {"idle", "sync", "memory", "shared"}:
        fail("--phases takes a comma-separated subset of: idle, sync, memory, shared")
    if "shared" in args.phases and not 1 <= args.keys <= args.n:
        fail("--keys must be between 1 and --n")
    if args.n < 1 or args.mem_n < 1 or args.n > 100000:
        fail("--n and --mem-n must be between 1 and 100000")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
