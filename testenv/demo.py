#!/usr/bin/env python3
"""Lockstep's demo on the local environment: the Helm chart on the environment's node, then
OpenBao -> ExternalSecret -> Secret -> an application pod that prints the value, a rotation in
OpenBao, and the new pod (one rollout) that prints the new value.

Run by scripts/demo with the environment's virtualenv Python (it needs PyYAML, which the
environment installs), after `scripts/image` and `testenv.py up`. It talks to the apiserver and
OpenBao over HTTPS with the environment's CAs and tokens, installs the chart cluster-wide into
`lockstep-system` with helm (built by the environment), and leaves everything in place so it can
be inspected afterwards. Lockstep runs as a pod from the local image; the store reaches OpenBao
at the address pods use (the relay on the node's veth) and logs in with kubernetes auth as the
`demo/openbao-reader` ServiceAccount. The application is the static busybox image, under the
`restricted` Pod Security Standard, annotated `reloader.stakater.com/auto: "true"`.

With `--aws` (`scripts/demo --aws`) a sync and a rotation run against AWS Secrets Manager on
moto, behind the environment's AWS proxy, with IRSA, by `lockstep run` on the machine itself: a
ServiceAccount annotated with `eks.amazonaws.com/role-arn`, a SecretStore with
`auth.jwt.serviceAccountRef`, and the proxy checking the ServiceAccount token with a TokenReview
before moto's STS answers AssumeRoleWithWebIdentity. It uses the `demo-aws` namespace and boto3
(installed in the environment's virtualenv with moto) to write and rotate the secret. The chart
install with IRSA on the node is shown by the `install::helm` test.
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
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"
CHART_NS = "lockstep-system"
# The application image the environment imports into the node (static busybox).
APP_IMAGE = "lockstep.invalid/app:1"


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
    if "--aws" in sys.argv[3:]:
        install_crds(kube)
        return aws_demo(env, kube, lockstep_bin)
    if "LOCKSTEP_NODE_NAME" not in env:
        sys.exit("the environment has no node (started with --no-node?): the demo installs the chart on it")
    return chart_demo(env, kube)


def read_secret(kube: Http, ns: str, name: str) -> dict[str, str] | None:
    """A Secret's data, decoded; None while it does not exist."""
    code, s = kube.call("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")
    if code != 200:
        return None
    return {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}


def restricted_namespace(kube: Http, name: str) -> None:
    """A namespace whose pods must pass the `restricted` Pod Security Standard."""
    apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})


def pods(kube: Http, ns: str, selector: str) -> list[dict]:
    """The pods matching `selector` that are Running and Ready and not being deleted, oldest first."""
    code, lst = kube.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={urllib.parse.quote(selector)}")
    items = lst.get("items", []) if code == 200 else []
    ready = [p for p in items if not p["metadata"].get("deletionTimestamp")
             and (p.get("status") or {}).get("phase") == "Running"
             and any(c["type"] == "Ready" and c["status"] == "True"
                     for c in p["status"].get("conditions") or [])]
    return sorted(ready, key=lambda p: p["metadata"]["creationTimestamp"])


def pod_logs(kube: Http, ns: str, name: str) -> str:
    """A pod's log, read through the apiserver from the node's kubelet."""
    req = urllib.request.Request(f"{kube.base}/api/v1/namespaces/{ns}/pods/{name}/log")
    for k, v in kube.headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, context=kube.ctx, timeout=30) as resp:
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError:
        return ""


def pod_saying(kube: Http, ns: str, wanted: str, timeout: float = 120.0) -> tuple[dict, str]:
    """Waits for a ready application pod whose log has the line `wanted`."""
    def check():
        for pod in pods(kube, ns, "app=web"):
            log = pod_logs(kube, ns, pod["metadata"]["name"])
            if wanted + "\n" in log:
                return pod, log
        return None
    return wait(f"an application pod that prints {wanted}", check, timeout)


def helm(env: dict[str, str], *args: str) -> None:
    cmd = [env["LOCKSTEP_HELM"], *args, "--kubeconfig", env["KUBECONFIG"]]
    shown = ["helm", *args]
    print("    $ " + " ".join(shown), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"helm failed:\n{out.stdout}\n{out.stderr}")


def chart_demo(env: dict[str, str], kube: Http) -> int:
    """The chart on the node: OpenBao -> ExternalSecret -> Secret -> an application pod, a
    rotation, and the new pod that Lockstep's reload brings with the new value."""
    began = time.monotonic()
    bao = Http(env["BAO_ADDR"], env["BAO_CACERT"], {"X-Vault-Token": env["BAO_TOKEN"]})

    say(f"installing Lockstep's Helm chart on the node ({env['LOCKSTEP_NODE_NAME']}), cluster-wide, "
        f"in '{CHART_NS}' (restricted Pod Security Standard), with its CRDs")
    restricted_namespace(kube, CHART_NS)
    started = time.monotonic()
    helm(env, "upgrade", "--install", "lockstep", str(ROOT / "deploy" / "charts" / "lockstep"),
         "--namespace", CHART_NS, "--set", "image.pullPolicy=Never", "--wait", "--timeout", "120s")
    controller = wait("the Lockstep pod", lambda: pods(kube, CHART_NS, "app.kubernetes.io/name=lockstep"))[0]
    spec = controller["spec"]["containers"][0]
    print(f"    pod {CHART_NS}/{controller['metadata']['name']}: Ready in {time.monotonic() - started:.1f}s "
          f"(image {spec['image']}, uid {spec['securityContext'].get('runAsUser', '?')}, "
          f"read-only root: {spec['securityContext'].get('readOnlyRootFilesystem')})")

    say(f"namespace '{NS}' (restricted) with the ServiceAccount the store logs in to OpenBao as")
    restricted_namespace(kube, NS)
    apply(kube, {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "openbao-reader", "namespace": NS}})

    say("OpenBao: a KV v2 secret, a read policy, and the kubernetes auth method against our apiserver")
    password = "pw-" + secrets.token_hex(4)
    bao.call("POST", "/v1/secret/data/demo/database", {"data": {"username": "app", "password": password}})
    policy = ('path "secret/data/demo/*" { capabilities = ["read"] }\n'
              'path "secret/metadata/demo/*" { capabilities = ["read", "list"] }\n')
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
        "spec": {"provider": {"vault": {
            "server": env["LOCKSTEP_NODE_BAO_ADDR"], "path": "secret", "version": "v2",
            "caBundle": base64.b64encode(Path(env["LOCKSTEP_NODE_BAO_CA"]).read_bytes()).decode(),
            "auth": {"kubernetes": {"mountPath": "kubernetes-demo", "role": "demo",
                                    "serviceAccountRef": {"name": "openbao-reader", "audiences": ["openbao"]}}}}}}}
    external_secret = {
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "database", "namespace": NS},
        "spec": {"refreshInterval": "3s", "secretStoreRef": {"name": "openbao", "kind": "SecretStore"},
                 "target": {"name": "database"},
                 "dataFrom": [{"extract": {"key": "demo/database"}}]}}
    print(yaml.safe_dump(external_secret, sort_keys=False))
    apply(kube, store)
    apply(kube, external_secret)

    def secret_data():
        return read_secret(kube, NS, "database")

    data = wait("the synced Secret", secret_data)
    say(f"Secret {NS}/database synced by the Lockstep pod from OpenBao: {data}")
    code, es = kube.call("GET", f"/apis/external-secrets.io/v1/namespaces/{NS}/externalsecrets/database")
    ready = next(c for c in es["status"]["conditions"] if c["type"] == "Ready")
    print(f"    ExternalSecret Ready={ready['status']} reason={ready['reason']} message={ready['message']!r}")

    say("Deployment demo/web (reloader.stakater.com/auto: \"true\"): an application pod that "
        "takes the password as env and prints it")
    security = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    apply(kube, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{
                         "name": "web", "image": APP_IMAGE, "imagePullPolicy": "Never",
                         "command": ["sh", "-c", 'echo "password=$PASSWORD"; exec sleep 86400'],
                         "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {
                             "name": "database", "key": "password"}}}],
                         "securityContext": security}]}}}})
    old, log = pod_saying(kube, NS, f"password={password}")
    print(f"    pod {NS}/{old['metadata']['name']} says: {log.strip()}")

    rotated = "pw-" + secrets.token_hex(4)
    say(f"rotating the password in OpenBao to {rotated}")
    bao.call("POST", "/v1/secret/data/demo/database", {"data": {"username": "app", "password": rotated}})
    started = time.monotonic()
    data = wait("the Secret to follow the rotation",
                lambda: (d := secret_data()) and d.get("password") == rotated and d)
    synced = time.monotonic() - started
    print(f"    Secret {NS}/database followed in {synced:.1f}s (refreshInterval 3s): {data}")
    new, log = pod_saying(kube, NS, f"password={rotated}")
    say(f"a new pod {NS}/{new['metadata']['name']} says: {log.strip()} "
        f"({time.monotonic() - started:.1f}s after the rotation)")
    old_gone = wait("the old pod to go", lambda: all(
        p["metadata"]["uid"] != old["metadata"]["uid"] for p in pods(kube, NS, "app=web")) or None)
    if old_gone:
        print(f"    the old pod {old['metadata']['name']} is gone; one rollout, ReplicaSets:")
    show_replica_sets(replica_sets(kube))
    print(f"\n    demo done in {time.monotonic() - began:.1f}s (after the environment was up)")
    return 0


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
            return read_secret(kube, AWS_NS, "database")

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
