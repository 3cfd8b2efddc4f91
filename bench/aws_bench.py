#!/usr/bin/env python3
"""Lockstep's AWS benchmark on the local environment (moto behind the IRSA proxy).

Run it inside a fresh local environment (testenv.py starts and stops everything):

    export CARGO_TARGET_DIR=/root/.cache/lockstep/target
    cargo build --release -p lockstep
    python3 testenv/testenv.py run -- python3 bench/aws_bench.py

N ExternalSecrets (default 1,000) read K distinct Secrets Manager secrets (default 100) through
one SecretStore that authenticates with IRSA (`auth.jwt.serviceAccountRef`: a TokenRequest for
the ServiceAccount's `eks.amazonaws.com/role-arn`, then STS AssumeRoleWithWebIdentity, which
the environment's AWS proxy checks with a TokenReview like an IAM trust policy). ExternalSecret
i reads secret i mod K, so the ExternalSecrets of one secret are spread evenly over the
creation order (and over Lockstep's work queue), not grouped together.

  cold start  everything exists before `lockstep run` starts: time from process start until
              every ExternalSecret is Ready (Ready=True, SecretSynced), and the AWS calls made
              meanwhile;
  refresh     one full refresh cycle (refreshInterval, default 60s): the AWS calls made from
              the end of the cold start until every ExternalSecret's refreshTime has moved.

AWS calls are counted twice: by the AWS proxy's request log (`/lockstep-admin/log`, what
reached "AWS": every HTTP request, retries included) and by Lockstep's
`externalsecret_provider_api_calls_count`. Peak RSS is Lockstep's VmHWM at the end (and the
highest VmRSS sampled every 50 ms). No secret value is printed: values are random.

Targets (issue 4): at most K secret reads per cycle, at most one STS call per identity per
credential lifetime (the run is shorter than the one-hour lifetime of moto's credentials).

Only the Python standard library is used (and the helpers of `sync_bench.py`).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sync_bench as sb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NS = "lockstep-bench-aws"
SA = "bench-aws-reader"
STORE = "aws-irsa"
ES_API = sb.ES_API
GET = "secretsmanager.GetSecretValue"
BATCH = "secretsmanager.BatchGetSecretValue"
WEB_IDENTITY = "sts.AssumeRoleWithWebIdentity"
ASSUME = "sts.AssumeRole"
say, fail = sb.say, sb.fail


class Aws:
    """moto directly (seeding, not counted) and the proxy's admin endpoint."""

    def __init__(self, env: dict[str, str]):
        self.moto = env["LOCKSTEP_MOTO_URL"]
        self.admin = env["LOCKSTEP_AWS_PROXY"]

    @staticmethod
    def _post(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        u = urllib.parse.urlsplit(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def create_secret(self, name: str, value: str) -> None:
        # moto (without IAM enforcement) reads the service from the credential scope and does
        # not check the signature.
        headers = {
            "X-Amz-Target": "secretsmanager.CreateSecret",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                             "secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        }
        code, out = self._post(self.moto, "/", json.dumps({"Name": name, "SecretString": value})
                               .encode(), headers)
        if code != 200:
            fail(f"creating secret {name}: HTTP {code}: {out[:200]!r}")

    def trust(self, role: str, subject: str) -> None:
        code, out = self._post(self.admin, "/lockstep-admin/trust",
                               json.dumps({"role": role, "subjects": [subject]}).encode(),
                               {"Content-Type": "application/json"})
        if code != 200:
            fail(f"AWS proxy trust: HTTP {code}: {out[:200]!r}")

    def log(self) -> list[dict]:
        code, out = self._post(self.admin, "/lockstep-admin/log", None, {})
        if code != 200:
            fail(f"AWS proxy log: HTTP {code}")
        return json.loads(out)


def count(log: list[dict], since: int, action: str, prefix: str = "") -> tuple[int, int]:
    """(requests, distinct ids) of `action` after log sequence `since` naming ids with `prefix`."""
    n, ids = 0, set()
    for e in log:
        if e.get("seq", 0) < since or e.get("action") != action:
            continue
        named = [i for i in e.get("ids") or [] if i.startswith(prefix)]
        if prefix and not named:
            continue
        n += 1
        ids.update(named)
    return n, len(ids)


def aws_metric_calls(lockstep: sb.Lockstep) -> dict[tuple[str, str, str], float]:
    return sb.provider_calls(lockstep.metrics())


def diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def list_es(kube: sb.Http) -> list[dict]:
    items, cont = [], ""
    while True:
        q = f"?limit=500&continue={urllib.parse.quote(cont)}" if cont else "?limit=500"
        out = kube.must("GET", f"{ES_API}/namespaces/{NS}/externalsecrets{q}")
        items += out.get("items", [])
        cont = out.get("metadata", {}).get("continue", "")
        if not cont:
            return items


def refresh_times(kube: sb.Http) -> dict[str, str]:
    return {es["metadata"]["name"]: (es.get("status") or {}).get("refreshTime", "")
            for es in list_es(kube)}


def main() -> int:
    sb.exit_on_sigterm()
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "lockstep" / "target"))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="ExternalSecrets")
    p.add_argument("--secrets", type=int, default=100, help="distinct AWS secrets they read")
    p.add_argument("--refresh", default="60s", help="the ExternalSecrets' refreshInterval")
    p.add_argument("--no-refresh", action="store_true", help="skip the refresh cycle")
    p.add_argument("--concurrency", type=int, default=8, help="`lockstep run --concurrency`")
    p.add_argument("--lockstep-arg", action="append", default=[],
                   help="one more argument for `lockstep run` (repeatable)")
    p.add_argument("--workers", type=int, default=16, help="client threads creating objects")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait in each phase")
    p.add_argument("--keep-logs", action="store_true", help="keep Lockstep's log")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--lockstep", default=str(Path(target) / "release" / "lockstep"),
                   help="the lockstep binary (default: the release build in CARGO_TARGET_DIR)")
    args = p.parse_args()
    if not 1 <= args.secrets <= args.n <= 100000:
        fail("need 1 <= --secrets <= --n <= 100000")

    env_file = os.environ.get("LOCKSTEP_TESTENV")
    if not env_file:
        fail("LOCKSTEP_TESTENV is not set: run this through "
             "`python3 testenv/testenv.py run -- python3 bench/aws_bench.py`")
    env = sb.load_env(env_file)
    binary = Path(args.lockstep)
    if not binary.exists():
        fail(f"{binary} does not exist: build it with `cargo build --release -p lockstep`")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    say(f"repository HEAD {head}; lockstep binary {binary} "
        f"(built {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(binary.stat().st_mtime))}); "
        f"load average {os.getloadavg()[0]:.2f}")
    kube = sb.Http(env["LOCKSTEP_KUBE_SERVER"], env["LOCKSTEP_KUBE_CA"],
                   {"Authorization": f"Bearer {env['LOCKSTEP_ADMIN_TOKEN']}"})
    aws = Aws(env)
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = Path(tempfile.mkdtemp(prefix="lockstep-aws-bench-", dir=base))
    results: dict = {"head": head, "n": args.n, "secrets": args.secrets, "refresh": args.refresh}

    # ---- setup: CRDs, secrets in moto, the IRSA identity, the store, the ExternalSecrets.
    bench = sb.Bench.__new__(sb.Bench)  # only for apply_crds, which needs .kube
    bench.kube = kube
    bench.apply_crds()
    prefix = f"bench-aws-{int(time.time())}"
    t = time.monotonic()
    sb.parallel(lambda i: aws.create_secret(
        f"{prefix}/{i:03d}",
        json.dumps({"value": base64.b64encode(os.urandom(48)).decode()})),
        range(args.secrets), args.workers)
    say(f"created {args.secrets} secrets in moto in {time.monotonic() - t:.1f} s")
    role = "arn:aws:iam::123456789012:role/lockstep-bench"
    aws.trust(role, f"system:serviceaccount:{NS}:{SA}")
    kube.must("POST", "/api/v1/namespaces",
              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.must("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": SA, "annotations": {"eks.amazonaws.com/role-arn": role}}})
    kube.must("POST", f"{ES_API}/namespaces/{NS}/secretstores", {
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": {"name": STORE},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1",
                                      "auth": {"jwt": {"serviceAccountRef": {"name": SA}}}}}}})

    watch = sb.ReadyWatch(kube, NS)  # before the creates: it lists at most 500 at start

    def create(i: int) -> None:
        name = f"es-{i:05d}"
        code, out = kube.call("POST", f"{ES_API}/namespaces/{NS}/externalsecrets", {
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name},
            "spec": {"refreshInterval": args.refresh,
                     "secretStoreRef": {"name": STORE, "kind": "SecretStore"},
                     "target": {"name": name},
                     "dataFrom": [{"extract": {"key": f"{prefix}/{i % args.secrets:03d}"}}]}})
        if code != 201:
            fail(f"creating ExternalSecret {name}: HTTP {code}: {str(out)[:300]}")

    t = time.monotonic()
    sb.parallel(create, range(args.n), args.workers)
    say(f"created {args.n} ExternalSecrets in {time.monotonic() - t:.1f} s")
    names = [f"es-{i:05d}" for i in range(args.n)]
    # Object timestamps are whole seconds, and a sync only shares a read that started a second
    # after its ExternalSecret last changed; the benchmark measures the steady state of an
    # existing cluster, not the second after the last create.
    time.sleep(1.5)

    # ---- cold start
    since = max((e.get("seq", 0) for e in aws.log()), default=-1) + 1
    lockstep = sb.Lockstep(binary, env["KUBECONFIG"], NS, args.concurrency,
                           work / "lockstep.log", args.lockstep_arg)
    t0 = lockstep.started
    deadline = t0 + args.timeout
    ready_at = None
    while time.monotonic() < deadline:
        lockstep.check_alive()
        if watch.wait(names, 0.5):
            ready_at = max(watch.ready[n] for n in names)
            break
    if ready_at is None:
        fail(f"not every ExternalSecret was Ready within {args.timeout:.0f} s")
    cold = ready_at - t0
    # Let the follow-up reconciles (finalizer, Secret and status events) finish.
    time.sleep(2)
    log = aws.log()
    cold_reads, cold_keys = count(log, since, GET, prefix)
    cold_batch, _ = count(log, since, BATCH, prefix)
    cold_sts, _ = count(log, since, WEB_IDENTITY)
    cold_assume, _ = count(log, since, ASSUME)
    metrics_cold = aws_metric_calls(lockstep)
    results["cold"] = {"seconds": round(cold, 2), "GetSecretValue": cold_reads,
                       "distinct_secrets_read": cold_keys, "BatchGetSecretValue": cold_batch,
                       "AssumeRoleWithWebIdentity": cold_sts, "AssumeRole": cold_assume,
                       "metrics": {" ".join(k): v for k, v in metrics_cold.items()}}
    say(f"cold start: {args.n} Ready in {cold:.2f} s; GetSecretValue {cold_reads} "
        f"({cold_keys} distinct), AssumeRoleWithWebIdentity {cold_sts}")

    # ---- one refresh cycle
    if not args.no_refresh:
        before = refresh_times(kube)
        since2 = max((e.get("seq", 0) for e in aws.log()), default=-1) + 1
        t1 = time.monotonic()
        done = False
        while time.monotonic() < t1 + args.timeout:
            lockstep.check_alive()
            now = refresh_times(kube)
            if all(now.get(n, "") > before.get(n, "") for n in names):
                done = True
                break
            time.sleep(1)
        if not done:
            fail("not every ExternalSecret refreshed within the timeout")
        cycle = time.monotonic() - t1
        log = aws.log()
        ref_reads, ref_keys = count(log, since2, GET, prefix)
        ref_sts, _ = count(log, since2, WEB_IDENTITY)
        metrics_ref = diff(aws_metric_calls(lockstep), metrics_cold)
        results["refresh_metrics"] = metrics_ref
        results["refresh"] = {"seconds": round(cycle, 1), "GetSecretValue": ref_reads,
                              "distinct_secrets_read": ref_keys,
                              "AssumeRoleWithWebIdentity": ref_sts,
                              "metrics": {" ".join(k): v for k, v in metrics_ref.items()}}
        say(f"refresh cycle: all {args.n} refreshed {cycle:.1f} s after the cold start; "
            f"GetSecretValue {ref_reads} ({ref_keys} distinct), "
            f"AssumeRoleWithWebIdentity {ref_sts}")

    status = lockstep.status()
    peak, sampled = status.get("VmHWM", 0), lockstep.peak_sampled
    total_sts, _ = count(aws.log(), since, WEB_IDENTITY)
    results["peak_rss_kib"] = peak
    results["sts_total"] = total_sts
    lockstep.stop()
    watch.stop()

    # ---- report
    print("\n== AWS calls counted by Lockstep (externalsecret_provider_api_calls_count)")
    for (provider, call, st), v in sorted(metrics_cold.items()):
        print(f"  cold     {provider:22} {call:28} {st:18} {v:8.0f}")
    for (provider, call, st), v in sorted(results.pop("refresh_metrics", {}).items()):
        print(f"  refresh  {provider:22} {call:28} {st:18} {v:8.0f}")

    def line(what: str, value: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("MET" if met else "MISSED")
        print(f"  {what:58} {value:>14}  {target:14} {verdict}")

    print(f"\n== summary ({args.n} ExternalSecrets, {args.secrets} AWS secrets, IRSA, "
          f"lockstep at {head})")
    line(f"cold start, {args.n} ExternalSecrets Ready", f"{cold:.2f} s")
    line("cold start GetSecretValue requests (at the proxy)", str(cold_reads),
         f"<= {args.secrets}", cold_reads <= args.secrets)
    if "refresh" in results:
        r = results["refresh"]
        line(f"refresh cycle ({args.refresh}) GetSecretValue requests", str(r["GetSecretValue"]),
             f"<= {args.secrets}", r["GetSecretValue"] <= args.secrets)
    line("STS AssumeRoleWithWebIdentity, whole run (one identity)", str(total_sts),
         "<= 1", total_sts <= 1)
    line("peak RSS (VmHWM / sampled VmRSS)", f"{sb.mib(peak)} / {sb.mib(sampled)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.keep_logs:
        say(f"Lockstep's log: {work / 'lockstep.log'}")
    else:
        (work / "lockstep.log").unlink(missing_ok=True)
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
