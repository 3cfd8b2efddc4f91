#!/usr/bin/env python3
"""Lockstep's demo on the local environment: OpenBao -> ExternalSecret -> Secret, then a rotation
that the Secret follows and that rolls the Deployment using it (a new ReplicaSet).

Run by scripts/demo with the environment's virtualenv Python (it needs PyYAML, which the
environment installs), after `testenv.py up`. It talks to the apiserver and OpenBao over HTTPS
with the environment's CAs and tokens, runs `lockstep run --reload` scoped to the `demo` namespace,
and leaves the objects in place so they can be inspected afterwards. The Deployment `web` is
annotated `reloader.stakater.com/auto: "true"` and takes the Secret with envFrom; its pod never
runs (the environment has no kubelet), but kube-controller-manager makes a ReplicaSet for each
pod template, which is what the demo shows before and after the rotation.

With `--aws` (`scripts/demo --aws`) the same story runs against AWS Secrets Manager on moto,
behind the environment's AWS proxy, with IRSA: a ServiceAccount annotated with
`eks.amazonaws.com/role-arn`, a SecretStore with `auth.jwt.serviceAccountRef`, and the proxy
checking the ServiceAccount token with a TokenReview before moto's STS answers
AssumeRoleWithWebIdentity. It uses the `demo-aws` namespace and boto3 (installed in the
environment's virtualenv with moto) to write and rotate the secret.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def load_env(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip("'")
    return out


class Http:
    def __init__(self, base: str, cafile: str, headers: dict[str, str]):
        self.base = base
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.headers = headers

    def call(self, method: str, path: str, body=None, content_type="application/json"):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        for k, v in self.headers.items():
            req.add_header(k, v)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode(errors="replace")}


def wait(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    delay = 0.1
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    sys.exit(f"timed out waiting for {what}")


def path_for(obj: dict) -> str:
    group_version = obj["apiVersion"]
    kind = obj["kind"]
    plural = {"CustomResourceDefinition": "customresourcedefinitions", "Namespace": "namespaces",
              "ServiceAccount": "serviceaccounts", "Deployment": "deployments",
              "SecretStore": "secretstores", "ExternalSecret": "externalsecrets"}[kind]
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    ns = obj["metadata"].get("namespace")
    scope = f"/namespaces/{ns}" if ns else ""
    return f"{prefix}{scope}/{plural}/{obj['metadata']['name']}"


def apply(kube: Http, obj: dict) -> dict:
    """Server-side apply, so running the demo twice just updates the objects."""
    code, out = kube.call("PATCH", path_for(obj) + "?fieldManager=lockstep-demo&force=true",
                          json.dumps(obj).encode(), "application/apply-patch+yaml")
    if code >= 300:
        sys.exit(f"applying {obj['kind']} {obj['metadata']['name']}: HTTP {code}: {out}")
    return out


def install_crds(kube: Http) -> None:
    say("installing Lockstep's CRDs (the external-secrets.io kinds, generated from the Rust types)")
    for f in sorted((ROOT / "deploy" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        apply(kube, crd)
        name = crd["metadata"]["name"]
        wait(f"CRD {name}", lambda: any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (kube.call("GET", path_for(crd))[1].get("status") or {}).get("conditions") or []))
        print(f"    {name}: established")


def main() -> int:
    env = load_env(sys.argv[1])
    lockstep_bin = sys.argv[2]
    kube = Http(env["LOCKSTEP_KUBE_SERVER"], env["LOCKSTEP_KUBE_CA"],
                {"Authorization": f"Bearer {env['LOCKSTEP_ADMIN_TOKEN']}"})
    install_crds(kube)
    if "--aws" in sys.argv[3:]:
        return aws_demo(env, kube, lockstep_bin)
    bao = Http(env["BAO_ADDR"], env["BAO_CACERT"], {"X-Vault-Token": env["BAO_TOKEN"]})

    say("namespace 'demo' with the ServiceAccount the store logs in to OpenBao as")
    apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    apply(kube, {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "openbao-reader", "namespace": NS}})

    say("OpenBao: a KV v2 secret, a read policy, and the kubernetes auth method against our apiserver")
    password = "pw-" + secrets.token_hex(4)
    bao.call("POST", "/v1/secret/data/demo/database", {"data": {"username": "app", "password": password}})
    policy = ('path "secret/data/demo/*" { capabilities = ["read"] }\n'
              'path "secret/metadata/demo/*" { capabilities = ["read", "list"] }\n'
              'path "sys/mounts/secret" { capabilities = ["read"] }\n')
    bao.call("PUT", "/v1/sys/policies/acl/demo-read", {"policy": policy})
    bao.call("POST", "/v1/sys/auth/kubernetes-demo", {"type": "kubernetes"})  # 400 if it exists
    bao.call("POST", "/v1/auth/kubernetes-demo/config", {
        "kubernetes_host": env["LOCKSTEP_KUBE_SERVER"],
        "kubernetes_ca_cert": Path(env["LOCKSTEP_KUBE_CA"]).read_text(),
        "token_reviewer_jwt": env["LOCKSTEP_OPENBAO_REVIEWER_JWT"]})
    bao.call("POST", "/v1/auth/kubernetes-demo/role/demo", {
        "bound_service_account_names": ["openbao-reader"], "bound_service_account_namespaces": [NS],
        "audience": "openbao", "token_policies": ["demo-read"], "token_ttl": "10m"})
    print(f"    secret/demo/database = {{username: app, password: {password}}}")

    say("a SecretStore on OpenBao and an ExternalSecret (the manifests an ESO user already has)")
    store = {
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": {"name": "openbao", "namespace": NS},
        "spec": {"provider": {"openBao": {
            "server": env["BAO_ADDR"], "path": "secret", "version": "v2",
            "caBundle": base64.b64encode(Path(env["BAO_CACERT"]).read_bytes()).decode(),
            "auth": {"kubernetes": {"path": "kubernetes-demo", "role": "demo",
                                    "serviceAccountRef": {"name": "openbao-reader", "audiences": ["openbao"]}}}}}}}
    external_secret = {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "database", "namespace": NS},
        "spec": {"refreshInterval": "5s", "secretStoreRef": {"name": "openbao", "kind": "SecretStore"},
                 "target": {"name": "database"},
                 "dataFrom": [{"extract": {"key": "demo/database"}}]}}
    print(yaml.safe_dump(external_secret, sort_keys=False))
    apply(kube, store)
    apply(kube, external_secret)
    apply(kube, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS,
                                                                     "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1",
                                                       "envFrom": [{"secretRef": {"name": "database"}}]}]}}}})

    say("starting `lockstep run --namespace demo --reload` (sync, and Reloader's rollouts)")
    proc = subprocess.Popen([lockstep_bin, "run", "--namespace", NS, "--reload", "--metrics-addr", "127.0.0.1:0",
                             "--health-addr", "127.0.0.1:0", "--log-format", "text"],
                            env={**os.environ, "KUBECONFIG": env["KUBECONFIG"], "RUST_LOG": "info"})
    try:
        def secret_data():
            code, s = kube.call("GET", f"/api/v1/namespaces/{NS}/secrets/database")
            if code != 200:
                return None
            return {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}

        data = wait("the synced Secret", secret_data)
        say(f"Secret demo/database synced from OpenBao: {data}")
        code, es = kube.call("GET", f"/apis/external-secrets.io/v1/namespaces/{NS}/externalsecrets/database")
        ready = next(c for c in es["status"]["conditions"] if c["type"] == "Ready")
        print(f"    ExternalSecret Ready={ready['status']} reason={ready['reason']} message={ready['message']!r}")

        # The reload controller records the Secret's hash on the Deployment (its baseline)
        # without rolling it; kube-controller-manager has made the first ReplicaSet.
        wait("the Deployment's reload baseline", lambda: baseline(kube).get("secret/database", "absent") != "absent")
        before = wait("the Deployment's first ReplicaSet", lambda: replica_sets(kube))
        say("Deployment demo/web (reloader.stakater.com/auto: \"true\", envFrom the Secret): "
            "ReplicaSets before the rotation")
        show_replica_sets(before)

        rotated = "pw-" + secrets.token_hex(4)
        say(f"rotating the password in OpenBao to {rotated}")
        bao.call("POST", "/v1/secret/data/demo/database", {"data": {"username": "app", "password": rotated}})
        started = time.monotonic()
        data = wait("the Secret to follow the rotation",
                    lambda: (d := secret_data()) and d.get("password") == rotated and d)
        say(f"Secret followed the rotation in {time.monotonic() - started:.1f}s: {data}")
        names = {rs["metadata"]["name"] for rs in before}
        after = wait("the Deployment's new ReplicaSet",
                     lambda: (r := replica_sets(kube)) and any(x["metadata"]["name"] not in names for x in r) and r)
        say(f"Deployment demo/web rolled: a new ReplicaSet {time.monotonic() - started:.1f}s after the rotation")
        show_replica_sets(after)
        code, d = kube.call("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
        env_vars = [e["name"] for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []]
        print(f"    pod template env set by the reload: {', '.join(env_vars)} (a keyed hash of the data, "
              "not the data)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return 0


def baseline(kube: Http) -> dict:
    """The reload baselines Lockstep recorded on Deployment demo/web."""
    code, d = kube.call("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
    text = (d.get("metadata", {}).get("annotations") or {}).get("reload.lockstep.dev/hashes") if code == 200 else None
    return json.loads(text) if text else {}


def replica_sets(kube: Http) -> list[dict]:
    """Deployment demo/web's ReplicaSets, oldest first."""
    code, lst = kube.call("GET", f"/apis/apps/v1/namespaces/{NS}/replicasets?labelSelector=app%3Dweb")
    items = lst.get("items", []) if code == 200 else []
    return sorted(items, key=lambda rs: int(rs["metadata"].get("annotations", {})
                                           .get("deployment.kubernetes.io/revision", "0")))


def show_replica_sets(items: list[dict]) -> None:
    print(f"    {'REPLICASET':<22} {'REVISION':<9} {'DESIRED':<8} CREATED")
    for rs in items:
        meta = rs["metadata"]
        print(f"    {meta['name']:<22} {meta.get('annotations', {}).get('deployment.kubernetes.io/revision', '?'):<9} "
              f"{rs['spec'].get('replicas', 0):<8} {meta['creationTimestamp']}")


AWS_NS = "demo-aws"
AWS_ROLE = "arn:aws:iam::123456789012:role/lockstep-demo"
AWS_KEY = "demo/database"


def proxy_admin(env: dict[str, str], method: str, what: str, body=None):
    req = urllib.request.Request(f"{env['LOCKSTEP_AWS_PROXY']}/lockstep-admin/{what}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def aws_demo(env: dict[str, str], kube: Http, lockstep_bin: str) -> int:
    import boto3  # in the environment's virtualenv (moto depends on it)

    # Through the AWS proxy (AWS_ENDPOINT_URL), with the environment's dummy keys.
    sm = boto3.client("secretsmanager", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    subject = f"system:serviceaccount:{AWS_NS}:aws-reader"

    say(f"namespace '{AWS_NS}' with a ServiceAccount for the IAM role {AWS_ROLE} (IRSA)")
    apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AWS_NS}})
    apply(kube, {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "aws-reader", "namespace": AWS_NS,
                              "annotations": {"eks.amazonaws.com/role-arn": AWS_ROLE}}})

    say("the role's trust policy, kept by the AWS proxy in front of moto: it trusts only "
        f"{subject}, for the audience sts.amazonaws.com")
    proxy_admin(env, "POST", "trust", {"role": AWS_ROLE, "subjects": [subject]})

    say("AWS Secrets Manager (moto): a secret")
    password = "pw-" + secrets.token_hex(4)
    value = json.dumps({"username": "app", "password": password})
    try:
        sm.create_secret(Name=AWS_KEY, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=AWS_KEY, SecretString=value)
    print(f"    {AWS_KEY} = {{username: app, password: {password}}}")

    say("a SecretStore on AWS Secrets Manager with IRSA and an ExternalSecret "
        "(the manifests an ESO user already has)")
    store = {
        "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
        "metadata": {"name": "aws", "namespace": AWS_NS},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager", "region": "us-east-1",
            "auth": {"jwt": {"serviceAccountRef": {"name": "aws-reader"}}}}}}}
    external_secret = {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "database", "namespace": AWS_NS},
        "spec": {"refreshInterval": "5s", "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
                 "target": {"name": "database"},
                 "dataFrom": [{"extract": {"key": AWS_KEY}}]}}
    print(yaml.safe_dump(store, sort_keys=False))
    print(yaml.safe_dump(external_secret, sort_keys=False))
    apply(kube, store)
    apply(kube, external_secret)
    seq = max((e.get("seq", 0) for e in proxy_admin(env, "GET", "log")), default=-1) + 1

    say(f"starting `lockstep run --namespace {AWS_NS}` (AWS_ENDPOINT_URL={env['AWS_ENDPOINT_URL']}, the proxy)")
    proc = subprocess.Popen([lockstep_bin, "run", "--namespace", AWS_NS, "--metrics-addr", "127.0.0.1:0",
                             "--health-addr", "127.0.0.1:0", "--log-format", "text"],
                            env={**os.environ, "KUBECONFIG": env["KUBECONFIG"], "RUST_LOG": "info"})
    try:
        def secret_data():
            code, s = kube.call("GET", f"/api/v1/namespaces/{AWS_NS}/secrets/database")
            if code != 200:
                return None
            return {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}

        data = wait("the synced Secret", secret_data)
        say(f"Secret {AWS_NS}/database synced from AWS Secrets Manager: {data}")
        code, es = kube.call("GET", f"/apis/external-secrets.io/v1/namespaces/{AWS_NS}/externalsecrets/database")
        ready = next(c for c in es["status"]["conditions"] if c["type"] == "Ready")
        print(f"    ExternalSecret Ready={ready['status']} reason={ready['reason']} message={ready['message']!r}")
        calls = [e for e in proxy_admin(env, "GET", "log") if e.get("seq", 0) >= seq]
        for e in calls:
            if e["action"] == "sts.AssumeRoleWithWebIdentity":
                print(f"    the proxy reviewed the ServiceAccount token: subject {e.get('subject')!r} "
                      f"-> HTTP {e['status']} (AssumeRoleWithWebIdentity for {e['ids'][0]})")
        reads = sum(1 for e in calls if e["action"] == "secretsmanager.GetSecretValue")
        print(f"    AWS calls so far: {len(calls)} ({reads} GetSecretValue)")

        rotated = "pw-" + secrets.token_hex(4)
        say(f"rotating the password in AWS Secrets Manager to {rotated}")
        sm.put_secret_value(SecretId=AWS_KEY,
                            SecretString=json.dumps({"username": "app", "password": rotated}))
        started = time.monotonic()
        data = wait("the Secret to follow the rotation",
                    lambda: (d := secret_data()) and d.get("password") == rotated and d)
        say(f"Secret followed the rotation in {time.monotonic() - started:.1f}s: {data}")
        sts = sum(1 for e in proxy_admin(env, "GET", "log")
                  if e.get("seq", 0) >= seq and e["action"] == "sts.AssumeRoleWithWebIdentity")
        print(f"    STS AssumeRoleWithWebIdentity calls in the whole demo: {sts} "
              "(credentials are cached until shortly before they expire)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
