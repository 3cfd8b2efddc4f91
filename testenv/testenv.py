#!/usr/bin/env python3
"""Lockstep's local test environment: a real control plane, a node, OpenBao and moto.

Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and etcd from
their Go modules (pinned in testenv/go/*/go.mod) into a cache outside the repository, installs
OpenBao and moto into a virtualenv in the same cache and the node's containerd, runc and CNI
plugins from Debian, then starts every server on free loopback ports (the node in a network
namespace of its own) with freshly generated certificates, and writes one env file that tests
and the demo source. `--no-node` (before the command) leaves the node out.

Commands:
  build            build and install everything, start nothing
  run -- CMD...    start the environment, run CMD with its variables, stop everything
  up               start the environment in the background (for the demo and for debugging)
  down             stop what `up` started, then clean
  clean            remove what environments whose supervisor was killed (kill -9) left behind:
                   processes, containers, the node's cgroups, network namespace and veth, state
                   folders; every start does this too, and running environments are untouched
  status           say whether an environment started by `up` is running

Only the Python standard library, Go and openssl are used here; nothing is downloaded except
through the Go module proxy and PyPI.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import node
import tools

ROOT = Path(__file__).resolve().parent
GO_KUBE = ROOT / "go" / "kube"
GO_ETCD = ROOT / "go" / "etcd"
AWS_PROXY = ROOT / "awsproxy.py"
RELAY = ROOT / "relay.py"
IMAGE_BUILD = ROOT.parent / "deploy" / "image" / "build.py"
REQUIREMENTS = ROOT / "requirements.txt"

CACHE = Path(os.environ.get("LOCKSTEP_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lockstep"))
TESTENV_CACHE = CACHE / "testenv"
CURRENT_ENV = TESTENV_CACHE / "current.env"
CURRENT_PID = TESTENV_CACHE / "current.pid"
IMAGES = CACHE / "images"
STATE_PREFIX = "lockstep-testenv-"

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "lockstep-admin"
RESTRICTED_USER = "lockstep-restricted"
TESTENV_NAMESPACE = "lockstep-testenv"
OPENBAO_REVIEWER_SA = "openbao-token-reviewer"

# The controllers Lockstep's tests rely on: rollouts create real ReplicaSets, ControllerRevisions
# and Jobs; namespaces are really deleted; every namespace gets its default ServiceAccount and
# its kube-root-ca.crt ConfigMap.
KCM_CONTROLLERS = [
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller",
]
# With the node: Services get EndpointSlices (kube-proxy routes them), and the node-lifecycle
# controller lifts the not-ready taint a new node is registered with.
KCM_NODE_CONTROLLERS = [
    "endpoints-controller",
    "endpointslice-controller",
    "node-lifecycle-controller",
    "disruption-controller",
]
NODE_BINARIES = ["kube-scheduler", "kubelet", "kube-proxy"]

COLD_BUILD_HINT = "a few minutes on 2 cores the first time"


def say(msg: str) -> None:
    print(f"[testenv] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> "NoReturn":  # noqa: F821
    say(f"error: {msg}")
    sys.exit(1)


# --------------------------------------------------------------------------------------------
# versions and cache layout


def go_mod_version(mod: Path, module: str) -> str:
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", mod.read_text(), re.M)
    if not m:
        fail(f"{mod} does not require {module}")
    return m.group(1)


KUBE_VERSION = go_mod_version(GO_KUBE / "go.mod", "k8s.io/kubernetes")
ETCD_VERSION = go_mod_version(GO_ETCD / "go.mod", "go.etcd.io/etcd/server/v3")


def bin_dir() -> Path:
    return TESTENV_CACHE / f"kube-{KUBE_VERSION}_etcd-{ETCD_VERSION}" / "bin"


def venv_dir() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return TESTENV_CACHE / f"venv-{digest}"


# --------------------------------------------------------------------------------------------
# building


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Build with the Go on this machine; never fetch another toolchain.
    env.setdefault("GOTOOLCHAIN", "local")
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=readonly"
    return env


def run_go_build(module_dir: Path, what: str, packages: list[str], ldflags: str, out: Path) -> None:
    env = go_env()
    say(f"{what}: downloading Go modules (through the Go module proxy)")
    subprocess.run(["go", "mod", "download"], cwd=module_dir, env=env, check=True)
    listed = subprocess.run(
        ["go", "list", "-deps", "-f", "{{.ImportPath}}", *packages],
        cwd=module_dir, env=env, check=True, capture_output=True, text=True,
    )
    total = len(listed.stdout.split())
    say(f"{what}: compiling {total} Go packages ({COLD_BUILD_HINT}; cached packages are skipped)")
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        ["go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out) + "/", *packages],
        cwd=module_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    compiled, last_report, errors = 0, start, []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if re.match(r"^[\w.\-]+(/[\w.\-~]+)*$", line):
            compiled += 1
        else:
            errors.append(line)
        now = time.monotonic()
        if now - last_report >= 20:
            last_report = now
            say(f"{what}: {compiled}/{total} packages compiled, {int(now - start)}s elapsed")
    if proc.wait() != 0:
        print("\n".join(errors[-60:]), file=sys.stderr)
        fail(f"{what}: go build failed")
    say(f"{what}: built in {int(time.monotonic() - start)}s")


def kube_ldflags() -> str:
    """The version stamp, so /version and the node report v1.33.x."""
    minor = KUBE_VERSION.lstrip("v").split(".")[1]
    version_pkg = "k8s.io/component-base/version"
    return " ".join([
        "-s", "-w",
        f"-X {version_pkg}.gitVersion={KUBE_VERSION}",
        f"-X {version_pkg}.gitMajor=1",
        f"-X {version_pkg}.gitMinor={minor}",
        f"-X {version_pkg}.gitTreeState=clean",
        f"-X {version_pkg}.buildDate=1970-01-01T00:00:00Z",
    ])


def publish(staging: Path, target: Path) -> None:
    """Publish a build atomically, so an interrupted build is never reused."""
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)


def build_binaries() -> Path:
    target = bin_dir()
    wanted = ["etcd", "kube-apiserver", "kube-controller-manager"]
    if all((target / b).exists() for b in wanted):
        return target
    if shutil.which("go") is None:
        fail("Go is not installed: the test environment builds kube-apiserver and etcd from their Go modules")
    staging = target.parent / f"bin.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    run_go_build(
        GO_KUBE, f"kubernetes {KUBE_VERSION}",
        ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"],
        kube_ldflags(), staging,
    )
    run_go_build(GO_ETCD, f"etcd {ETCD_VERSION}", ["."], "-s -w", staging / "etcd-build")
    (staging / "etcd-build" / "etcd").rename(staging / "etcd")
    shutil.rmtree(staging / "etcd-build")
    publish(staging, target)
    return target


def node_bin_dir() -> Path:
    return TESTENV_CACHE / f"node-{KUBE_VERSION}" / "bin"


def build_node_binaries() -> Path:
    """kube-scheduler, kubelet and kube-proxy from the same Kubernetes module (most of their
    packages are already in Go's build cache from the control plane's build)."""
    target = node_bin_dir()
    if all((target / b).exists() for b in NODE_BINARIES):
        return target
    staging = target.parent / f"bin.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    run_go_build(GO_KUBE, f"the node's kubernetes {KUBE_VERSION}",
                 [f"k8s.io/kubernetes/cmd/{b}" for b in NODE_BINARIES], kube_ldflags(), staging)
    publish(staging, target)
    return target


def install_venv() -> Path:
    venv = venv_dir()
    marker = venv / ".installed"
    if marker.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    say(f"installing OpenBao and moto from PyPI into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
        check=True,
    )
    marker.write_text("ok\n")
    return venv


def workspace_version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT.parent / "Cargo.toml").read_text(), re.M)
    if not m:
        fail("no [workspace.package] version in Cargo.toml")
    return m.group(1)


def build_test_images() -> None:
    """The node's pause image and the test application image (cheap; built when missing)."""
    for name in ("pause", "app"):
        out = IMAGES / f"{name}.oci.tar"
        if not out.exists():
            IMAGES.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(IMAGE_BUILD), name, "--out", str(out)], check=True)


def build_all(with_node: bool = True) -> tuple[Path, Path, Path | None]:
    bins, venv = build_binaries(), install_venv()
    tools.ensure_helm()
    if not with_node:
        return bins, venv, None
    reason = node.can_run()
    if reason:
        fail(f"{reason} (or start without the node: --no-node)")
    node.ensure_packages(say, fail)
    node_bins = build_node_binaries()
    build_test_images()
    return bins, venv, node_bins


# --------------------------------------------------------------------------------------------
# certificates


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path, net: "node.NodeNet | None" = None) -> None:
    """A CA, the apiserver's serving cert, an admin client cert and the service-account keys;
    with the node, also the kubelet's serving cert, and the addresses pods use in the SANs."""
    pod_sans = f",IP:{net.host_ip},IP:{node.CLUSTER_IP}" if net else ""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=lockstep-testenv-ca",
            cwd=d)

    def leaf(name: str, subj: str, ext: str) -> None:
        (d / f"{name}.ext").write_text(ext)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
                cwd=d)

    leaf("apiserver", "/CN=kube-apiserver",
         "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
         "extendedKeyUsage=serverAuth\n"
         "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
         "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
         f"{pod_sans}\n")
    # A client certificate, so tests can use certificate authentication against the apiserver.
    leaf("client-admin", f"/O=system:masters/CN={ADMIN_USER}-cert",
         "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
         "extendedKeyUsage=clientAuth\n")
    # The AWS proxy's TLS listener (a private CA in front of AWS, as behind a TLS-inspecting
    # egress or a VPC endpoint with a private certificate).
    leaf("awsproxy", "/CN=lockstep-testenv-awsproxy",
         "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
         "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost"
         f"{f',IP:{net.host_ip}' if net else ''}\n")
    if net:
        leaf("openbao-node", "/CN=lockstep-testenv-openbao",
             "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
             f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:{net.host_ip}\n")
        leaf("kubelet", f"/CN={node.NODE_NAME}",
             "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
             f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{net.node_ip},DNS:{node.NODE_NAME}\n")
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


# --------------------------------------------------------------------------------------------
# processes


def _pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Runs in the child before exec: get `sig` when the supervisor dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_ports(n: int, pair: bool = False) -> list[int]:
    """n distinct free loopback ports; with pair=True, each port p also has p+1 free."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            held.append(s)
            if pair:
                s2 = socket.socket()
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    s2.close()
                    continue
                held.append(s2)
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


class Proc:
    def __init__(self, name: str, argv: list[str], state: Path, env: dict[str, str] | None = None,
                 cgroup: str | None = None):
        self.name = name
        self.log = state / "logs" / f"{name}.log"
        self.log.parent.mkdir(exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=state,
                preexec_fn=(lambda: (_pdeathsig(), node.join_cgroup(cgroup))) if cgroup else _pdeathsig,
            )
        with open(state / "pids", "a") as f:
            f.write(f"{self.popen.pid} {name}\n")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace").splitlines()[-30:]
            fail(f"{self.name} exited with {self.popen.returncode}; last lines of {self.log}:\n"
                 + "\n".join(tail))

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


def wait_until(what: str, proc: Proc, check, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        proc.check_alive()
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError, ValueError):
            pass
        if time.monotonic() > deadline:
            fail(f"{what} was not ready within {int(timeout)}s; see {proc.log}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def http(url: str, *, ctx: ssl.SSLContext | None = None, token: str | None = None,
         method: str = "GET", body: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tls_context(cafile: Path | None) -> ssl.SSLContext:
    if cafile is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=str(cafile))


def kubeconfig(server: str, ca: Path, token: str, user: str) -> str:
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    return json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lockstep-testenv",
                      "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "lockstep-testenv",
                      "context": {"cluster": "lockstep-testenv", "user": user}}],
        "current-context": "lockstep-testenv",
    }, indent=2)


# --------------------------------------------------------------------------------------------
# the environment


class Environment:
    def __init__(self, with_node: bool = True) -> None:
        self.procs: list[Proc] = []
        self.state: Path | None = None
        self.vars: dict[str, str] = {}
        self.with_node = with_node
        self.net: node.NodeNet | None = None

    def start(self) -> dict[str, str]:
        clean_stale_states()
        bins, venv, node_bins = build_all(self.with_node)
        started = time.monotonic()
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.state = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=base))
        (self.state / "supervisor.pid").write_text(f"{os.getpid()}\n")
        st = self.state
        say(f"starting servers on loopback (state in {st})")
        if self.with_node:
            # First, so that a cleanup after a crash finds the node's network namespace.
            self.net = node.allocate(st, TESTENV_CACHE)
        net = self.net
        make_certs(st, net)

        etcd_client, etcd_peer, api_port, kcm_port, moto_port, moto_iam_port, proxy_port, proxy_tls_port = \
            free_ports(8)
        (bao_port,) = free_ports(1, pair=True)  # OpenBao's cluster listener takes port + 1
        (bao_node_port,) = free_ports(1, pair=True)
        # OpenBao's extra configuration: a file audit device (OpenBao 2.x declares audit devices
        # in its configuration only), which tests count requests in, and with the node a second
        # listener for pods.
        bao_audit_log = st / "openbao-audit.log"
        bao_config = st / "openbao.hcl"
        bao_config.write_text(
            f'audit "file" "testenv" {{\n  options {{\n    file_path = "{bao_audit_log}"\n  }}\n}}\n'
            + (f'listener "tcp" {{\n  address = "127.0.0.1:{bao_node_port}"\n'
               f'  tls_cert_file = "{st / "openbao-node.crt"}"\n'
               f'  tls_key_file = "{st / "openbao-node.key"}"\n}}\n' if net else ""))
        # The apiserver's audit log: who read or listed Secrets, at the Metadata level (no
        # bodies), for ServiceAccounts only; tests count a store's reads by its identity.
        kube_audit_log = st / "kube-audit.log"
        (st / "kube-audit-policy.yaml").write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: Metadata\n  userGroups: [system:serviceaccounts]\n  verbs: [get, list]\n"
            "  resources: [{group: \"\", resources: [secrets]}]\n"
            "- level: None\n")

        # etcd
        etcd = self._spawn("etcd", [
            str(bins / "etcd"), "--name=testenv", f"--data-dir={st / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=testenv=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])

        # moto and OpenBao start while etcd and the apiserver come up.
        moto = self._spawn("moto", [str(venv / "bin" / "moto_server"), "-H", "127.0.0.1",
                                    "-p", str(moto_port)])
        # A second moto that enforces IAM (signatures and policies) after the first
        # MOTO_IAM_BOOTSTRAP_ACTIONS actions, which create its admin user (below).
        moto_iam = self._spawn("moto-iam", [str(venv / "bin" / "moto_server"), "-H", "127.0.0.1",
                                            "-p", str(moto_iam_port)],
                               env={**os.environ,
                                    "INITIAL_NO_AUTH_ACTION_COUNT": str(MOTO_IAM_BOOTSTRAP_ACTIONS)})
        bao_token = "root-" + secrets.token_hex(12)
        bao_home = st / "openbao-home"
        bao_home.mkdir()
        bao_tls = st / "openbao-tls"
        bao_tls.mkdir()
        bao = self._spawn("openbao", [
            str(venv / "bin" / "bao"), "server", "-dev", "-dev-tls",
            f"-dev-tls-cert-dir={bao_tls}", f"-dev-listen-address=127.0.0.1:{bao_port}",
            f"-dev-root-token-id={bao_token}",
            # The audit device; pods reach OpenBao through the relay on the node's veth, on a
            # second listener whose certificate (from the environment's CA) names its address.
            f"-config={bao_config}",
        ], env={**os.environ, "HOME": str(bao_home)})

        wait_until("etcd", etcd, lambda: b'"health":"true"' in
                   http(f"http://127.0.0.1:{etcd_client}/health")[1], timeout=30)

        admin_token = secrets.token_hex(24)
        restricted_token = secrets.token_hex(24)
        (st / "tokens.csv").write_text(
            f'{admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{restricted_token},{RESTRICTED_USER},{RESTRICTED_USER}\n"
        )
        api = self._spawn("kube-apiserver", [
            str(bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            # With the node, the `kubernetes` Service leads to the relay on the node's veth
            # (an endpoint may not be a loopback address); without it, it has no endpoint.
            *([f"--advertise-address={net.host_ip}", "--endpoint-reconciler-type=lease",
               f"--kubelet-client-certificate={st / 'client-admin.crt'}",
               f"--kubelet-client-key={st / 'client-admin.key'}",
               "--kubelet-preferred-address-types=InternalIP"]
              if net else ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]),
            f"--cert-dir={st / 'apiserver-certs'}",
            f"--tls-cert-file={st / 'apiserver.crt'}", f"--tls-private-key-file={st / 'apiserver.key'}",
            f"--client-ca-file={st / 'ca.crt'}",
            f"--token-auth-file={st / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={st / 'sa.pub'}",
            f"--service-account-signing-key-file={st / 'sa.key'}",
            f"--api-audiences={API_AUDIENCE}",
            f"--service-cluster-ip-range={node.SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={st / 'kube-audit-policy.yaml'}",
            f"--audit-log-path={kube_audit_log}",
            "--audit-log-format=json",
            "--v=0",
        ])
        server = f"https://127.0.0.1:{api_port}"
        ca_ctx = tls_context(st / "ca.crt")
        wait_until("kube-apiserver", api, lambda: http(f"{server}/readyz", ctx=ca_ctx,
                                                       token=admin_token)[0] == 200, timeout=120)

        (st / "admin.kubeconfig").write_text(kubeconfig(server, st / "ca.crt", admin_token, ADMIN_USER))
        (st / "restricted.kubeconfig").write_text(
            kubeconfig(server, st / "ca.crt", restricted_token, RESTRICTED_USER))

        kcm = self._spawn("kube-controller-manager", [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={st / 'admin.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={st / 'kcm-certs'}",
            f"--controllers={','.join(KCM_CONTROLLERS + (KCM_NODE_CONTROLLERS if net else []))}",
            f"--root-ca-file={st / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--concurrent-gc-syncs=5",
            "--profiling=false",
        ])
        any_ctx = tls_context(None)
        wait_until("kube-controller-manager", kcm,
                   lambda: http(f"https://127.0.0.1:{kcm_port}/healthz", ctx=any_ctx)[0] == 200)

        node_ready = None
        if net is not None:
            assert node_bins is not None
            node_ready = self._start_node(net, node_bins, api_port, admin_token,
                                          [api_port, bao_node_port, proxy_port, proxy_tls_port])

        # The identity OpenBao uses for TokenReviews, bound to system:auth-delegator.
        def kube(method: str, path: str, body: dict) -> dict:
            code, out = http(f"{server}{path}", ctx=ca_ctx, token=admin_token, method=method, body=body)
            if code >= 300 and code != 409:
                fail(f"{method} {path}: HTTP {code}: {out[:300]!r}")
            return json.loads(out or b"{}")

        kube("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": TESTENV_NAMESPACE}})
        kube("POST", f"/api/v1/namespaces/{TESTENV_NAMESPACE}/serviceaccounts",
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPENBAO_REVIEWER_SA}})
        kube("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "lockstep-testenv:openbao-token-reviewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": OPENBAO_REVIEWER_SA,
                          "namespace": TESTENV_NAMESPACE}],
        })
        reviewer = kube("POST", f"/api/v1/namespaces/{TESTENV_NAMESPACE}/serviceaccounts/"
                                f"{OPENBAO_REVIEWER_SA}/token",
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 172800}})["status"]["token"]

        # Wait for the serviceaccount controller to create the default ServiceAccount: proof that
        # kube-controller-manager is really reconciling.
        wait_until("the default ServiceAccount", kcm, lambda: http(
            f"{server}/api/v1/namespaces/default/serviceaccounts/default", ctx=ca_ctx,
            token=admin_token)[0] == 200, timeout=60)

        bao_ca = bao_tls / "vault-ca.pem"
        wait_until("OpenBao", bao, lambda: bao_ca.exists() and http(
            f"https://127.0.0.1:{bao_port}/v1/sys/health", ctx=tls_context(bao_ca))[0] == 200,
            timeout=60)
        wait_until("moto", moto, lambda: http(f"http://127.0.0.1:{moto_port}/moto-api/")[0] < 500,
                   timeout=60)
        moto_iam_url = f"http://127.0.0.1:{moto_iam_port}"
        wait_until("moto (IAM enforced)", moto_iam,
                   lambda: http(f"{moto_iam_url}/moto-api/")[0] < 500, timeout=60)
        iam_admin = bootstrap_moto_iam(venv, moto_iam_url)

        # Our AWS front: every AWS call of the tests goes through it (AWS_ENDPOINT_URL).
        token_file = st / "awsproxy.token"
        token_file.write_text(admin_token)
        token_file.chmod(0o600)
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        proxy = self._spawn("awsproxy", [
            sys.executable, str(AWS_PROXY), f"--port={proxy_port}",
            f"--upstream=moto=http://127.0.0.1:{moto_port}", f"--upstream=moto-iam={moto_iam_url}",
            f"--kube-server={server}", f"--kube-ca={st / 'ca.crt'}",
            f"--kube-token-file={token_file}",
            f"--tls-port={proxy_tls_port}", f"--tls-cert={st / 'awsproxy.crt'}",
            f"--tls-key={st / 'awsproxy.key'}",
        ])
        wait_until("the AWS proxy", proxy,
                   lambda: http(f"{proxy_url}/lockstep-admin/log")[0] == 200, timeout=30)
        if node_ready is not None:
            node_ready()

        self.vars = {
            "LOCKSTEP_TESTENV_DIR": str(st),
            "KUBECONFIG": str(st / "admin.kubeconfig"),
            "LOCKSTEP_KUBE_VERSION": KUBE_VERSION,
            "LOCKSTEP_KUBE_SERVER": server,
            "LOCKSTEP_KUBE_CA": str(st / "ca.crt"),
            "LOCKSTEP_ADMIN_USER": ADMIN_USER,
            "LOCKSTEP_ADMIN_TOKEN": admin_token,
            "LOCKSTEP_RESTRICTED_USER": RESTRICTED_USER,
            "LOCKSTEP_RESTRICTED_TOKEN": restricted_token,
            "LOCKSTEP_RESTRICTED_KUBECONFIG": str(st / "restricted.kubeconfig"),
            "LOCKSTEP_CLIENT_CERT": str(st / "client-admin.crt"),
            "LOCKSTEP_CLIENT_KEY": str(st / "client-admin.key"),
            "LOCKSTEP_SA_ISSUER": SA_ISSUER,
            "LOCKSTEP_SA_PUBLIC_KEY": str(st / "sa.pub"),
            "LOCKSTEP_API_AUDIENCE": API_AUDIENCE,
            "LOCKSTEP_TESTENV_NAMESPACE": TESTENV_NAMESPACE,
            "LOCKSTEP_OPENBAO_REVIEWER_JWT": reviewer,
            "BAO_ADDR": f"https://127.0.0.1:{bao_port}",
            "BAO_CACERT": str(bao_ca),
            "LOCKSTEP_BAO_AUDIT_LOG": str(bao_audit_log),
            "LOCKSTEP_KUBE_AUDIT_LOG": str(kube_audit_log),
            "BAO_TOKEN": bao_token,
            "AWS_ENDPOINT_URL": proxy_url,
            "LOCKSTEP_AWS_PROXY": proxy_url,
            "LOCKSTEP_AWS_PROXY_TLS": f"https://127.0.0.1:{proxy_tls_port}",
            "LOCKSTEP_AWS_PROXY_CA": str(st / "ca.crt"),
            "LOCKSTEP_MOTO_URL": f"http://127.0.0.1:{moto_port}",
            "LOCKSTEP_MOTO_IAM_URL": moto_iam_url,
            "LOCKSTEP_MOTO_IAM_ADMIN_KEY_ID": iam_admin["AccessKeyId"],
            "LOCKSTEP_MOTO_IAM_ADMIN_SECRET_KEY": iam_admin["SecretAccessKey"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "LOCKSTEP_VENV": str(venv),
            "LOCKSTEP_TESTENV_BIN": str(bins),
            "LOCKSTEP_HELM": str(tools.ensure_helm()),
        }
        archive = IMAGES / f"lockstep-{workspace_version()}.oci.tar"
        if archive.exists():
            self.vars["LOCKSTEP_IMAGE_ARCHIVE"] = str(archive)
        if net is not None:
            # What pods on the node use: the machine's side of the node's veth, where the relay
            # serves the apiserver's, OpenBao's and the AWS proxy's ports.
            self.vars.update({
                "LOCKSTEP_NODE_NAME": node.NODE_NAME,
                "LOCKSTEP_NODE_HOST_IP": net.host_ip,
                "LOCKSTEP_NODE_BAO_ADDR": f"https://{net.host_ip}:{bao_node_port}",
                "LOCKSTEP_NODE_BAO_CA": str(st / "ca.crt"),
                "LOCKSTEP_NODE_AWS_ENDPOINT_URL": f"http://{net.host_ip}:{proxy_port}",
                "LOCKSTEP_NODE_IMAGES": " ".join(sorted(p.name for p in IMAGES.glob("*.oci.tar"))),
            })
        env_file = st / "env"
        env_file.write_text("".join(f"{k}={shell_quote(v)}\n" for k, v in self.vars.items()))
        self.vars["LOCKSTEP_TESTENV"] = str(env_file)
        say(f"environment up in {time.monotonic() - started:.1f}s: kube-apiserver {KUBE_VERSION} at "
            f"{server}, OpenBao at {self.vars['BAO_ADDR']}, moto behind the AWS proxy at "
            f"{self.vars['AWS_ENDPOINT_URL']}")
        return self.vars

    def _start_node(self, net: node.NodeNet, node_bins: Path, api_port: int, admin_token: str,
                    relayed: list[int]):
        """Starts the relay, kube-scheduler and the node (containerd, kubelet, kube-proxy);
        returns a function that waits until the node is Ready and kube-proxy routes the
        `kubernetes` Service."""
        assert self.state is not None
        st = self.state
        root = st / "node"
        conf = root / "conf"
        conf.mkdir(parents=True)
        sched_port, kubelet_port, kubelet_healthz, proxy_metrics, proxy_healthz = free_ports(5)
        node_server = f"https://{net.host_ip}:{api_port}"
        (conf / "node.kubeconfig").write_text(
            kubeconfig(node_server, st / "ca.crt", admin_token, ADMIN_USER))

        self._spawn("relay", [sys.executable, str(RELAY), net.host_ip, *map(str, relayed)])
        sched = self._spawn("kube-scheduler", [
            str(node_bins / "kube-scheduler"), f"--kubeconfig={st / 'admin.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
            f"--cert-dir={st / 'scheduler-certs'}", "--profiling=false",
        ])

        node.make_cgroups(net)
        cgroup = f"{net.cgroup}/system"
        mounts = " && ".join(f"mkdir -p {d} && mount -t tmpfs -o mode=0755,size=64m lockstep-node {d}"
                             for d in node.PRIVATE_DIRS)
        holder = self._spawn("node-holder", [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", f"{mounts} && echo mounted && exec sleep infinity",
        ], cgroup=cgroup)
        wait_until("the node's mount namespace", holder,
                   lambda: "mounted" in holder.log.read_text(), timeout=10)

        def enter(argv: list[str]) -> list[str]:
            return ["nsenter", f"--mount=/proc/{holder.popen.pid}/ns/mnt",
                    f"--net=/run/netns/{net.netns}", "--", *argv]

        sock = root / "containerd.sock"
        (conf / "containerd.toml").write_text(node.containerd_config(root))
        (root / "cni" / "net.d").mkdir(parents=True)
        (root / "cni" / "net.d" / "10-lockstep.conflist").write_text(node.cni_config(net, root))
        ctrd = self._spawn("containerd", enter(
            ["containerd", f"--config={conf / 'containerd.toml'}", f"--address={sock}"]),
            cgroup=cgroup)

        def ctr(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["ctr", f"--address={sock}", "-n", "k8s.io", *args],
                                  capture_output=True, text=True)

        wait_until("containerd", ctrd, lambda: ctr("version").returncode == 0, timeout=30)
        for archive in sorted(IMAGES.glob("*.oci.tar")):
            out = ctr("images", "import", str(archive))
            if out.returncode != 0:
                fail(f"importing {archive.name} into the node's containerd: {out.stderr[-600:]}")
        images = ctr("images", "ls", "-q").stdout.split()
        if node.PAUSE_IMAGE not in images:
            fail(f"the pause image {node.PAUSE_IMAGE} is not in {IMAGES}; images: {images}")

        resolv = conf / "resolv.conf"
        resolv.write_text("# pods of the local node resolve no names\n")
        (conf / "kubelet.json").write_text(node.kubelet_config(
            net, root, st / "ca.crt", st / "kubelet.crt", st / "kubelet.key",
            kubelet_port, kubelet_healthz, sock, resolv))
        kubelet = self._spawn("kubelet", enter([
            str(node_bins / "kubelet"), f"--config={conf / 'kubelet.json'}",
            f"--kubeconfig={conf / 'node.kubeconfig'}", f"--root-dir={root / 'kubelet'}",
            f"--hostname-override={node.NODE_NAME}", f"--node-ip={net.node_ip}",
            f"--pod-infra-container-image={node.PAUSE_IMAGE}", "--v=0",
        ]), cgroup=cgroup)
        (conf / "kube-proxy.json").write_text(node.kube_proxy_config(
            net, conf / "node.kubeconfig", proxy_metrics, proxy_healthz))
        proxy = self._spawn("kube-proxy", enter([
            str(node_bins / "kube-proxy"), f"--config={conf / 'kube-proxy.json'}", "--v=0",
        ]), cgroup=cgroup)
        ca_ctx = tls_context(st / "ca.crt")
        server = f"https://127.0.0.1:{api_port}"

        def node_is_ready() -> bool:
            code, body = http(f"{server}/api/v1/nodes/{node.NODE_NAME}", ctx=ca_ctx,
                              token=admin_token)
            if code != 200:
                return False
            status = json.loads(body).get("status", {})
            taints = json.loads(body).get("spec", {}).get("taints", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in status.get("conditions", []))
            return ready and not taints

        def routed() -> bool:
            out = subprocess.run(["ip", "netns", "exec", net.netns, "iptables", "-t", "nat", "-S",
                                  "KUBE-SERVICES"], capture_output=True, text=True).stdout
            return f"-d {node.CLUSTER_IP}/32" in out

        def wait() -> None:
            wait_until("the node", kubelet, node_is_ready, timeout=90)
            wait_until("kube-proxy's routes", proxy, routed, timeout=30)
            sched.check_alive()
            if node.read_sysctl("net/ipv4/ip_forward") != "0":
                fail("IP forwarding was turned on on this machine while the node started")
        return wait

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               cgroup: str | None = None) -> Proc:
        assert self.state is not None
        p = Proc(name, argv, self.state, env, cgroup)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
        if self.state is not None:
            node.teardown(self.state)
            shutil.rmtree(self.state, ignore_errors=True)
            self.state = None


MOTO_IAM_BOOTSTRAP_ACTIONS = 3

# Runs in the virtualenv (boto3 comes with moto): the admin user of the IAM-enforcing moto,
# created with exactly MOTO_IAM_BOOTSTRAP_ACTIONS unauthenticated actions.
MOTO_IAM_BOOTSTRAP = """
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="lockstep-testenv-admin")
iam.put_user_policy(UserName="lockstep-testenv-admin", PolicyName="admin", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="lockstep-testenv-admin")["AccessKey"]
print(json.dumps({"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}))
"""


def bootstrap_moto_iam(venv: Path, url: str) -> dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-c", MOTO_IAM_BOOTSTRAP, url],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"could not create the admin user of the IAM-enforcing moto: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def shell_quote(v: str) -> str:
    if re.fullmatch(r"[\w@%+=:,./\-]*", v):
        return v
    return "'" + v.replace("'", "'\"'\"'") + "'"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def clean_stale_states() -> None:
    """Remove state left by a supervisor that was killed (its servers died with it)."""
    for base in {Path("/dev/shm"), Path(tempfile.gettempdir())}:
        if not base.is_dir():
            continue
        for d in base.glob(f"{STATE_PREFIX}*"):
            try:
                pid = int((d / "supervisor.pid").read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid and pid_alive(pid):
                continue
            for line in (d / "pids").read_text().splitlines() if (d / "pids").exists() else []:
                try:
                    os.killpg(int(line.split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass
            node.teardown(d)
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# commands


class Interrupted(Exception):
    pass


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def cmd_run(argv: list[str], with_node: bool) -> int:
    if not argv:
        fail("usage: testenv.py run -- COMMAND [ARGS...]")
    env = Environment(with_node)
    child: subprocess.Popen | None = None
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGHUP, _raise_interrupted)
    try:
        variables = env.start()
        # The command (e.g. cargo test) is told to stop if the supervisor is killed outright.
        child = subprocess.Popen(argv, env={**os.environ, **variables},
                                 preexec_fn=lambda: _pdeathsig(signal.SIGTERM))
        return child.wait()
    except (KeyboardInterrupt, Interrupted):
        say("interrupted: stopping")
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        env.stop()
        say("stopped everything")


def cmd_supervise(with_node: bool) -> int:
    """The background side of `up`: start, publish the env file, wait for SIGTERM, stop."""
    env = Environment(with_node)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        variables = env.start()
        tmp = CURRENT_ENV.with_suffix(".tmp")
        tmp.write_text(Path(variables["LOCKSTEP_TESTENV"]).read_text())
        tmp.rename(CURRENT_ENV)
        while True:
            for p in env.procs:
                if p.popen.poll() is not None:
                    say(f"{p.name} exited unexpectedly; stopping the environment")
                    return 1
            time.sleep(1)
    except Interrupted:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        CURRENT_ENV.unlink(missing_ok=True)
        CURRENT_PID.unlink(missing_ok=True)
        env.stop()


def current_pid() -> int | None:
    try:
        pid = int(CURRENT_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def cmd_up(with_node: bool) -> int:
    if current_pid() is not None and CURRENT_ENV.exists():
        say(f"already running; env file: {CURRENT_ENV}")
        return 0
    build_all(with_node)  # in the foreground, so its progress is visible
    TESTENV_CACHE.mkdir(parents=True, exist_ok=True)
    CURRENT_ENV.unlink(missing_ok=True)
    log = TESTENV_CACHE / "supervisor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, *([] if with_node else ["--no-node"]),
                                 "supervise"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    CURRENT_PID.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 300
    while not CURRENT_ENV.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            if proc.poll() is None:
                proc.terminate()
            fail("the environment did not start")
        time.sleep(0.2)
    say(f"up; env file: {CURRENT_ENV} (stop with: testenv/testenv.py down)")
    return 0


def cmd_down() -> int:
    pid = current_pid()
    if pid is None:
        say("not running")
        clean_stale_states()
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    clean_stale_states()
    say("stopped")
    return 0


def cmd_clean() -> int:
    """Removes what killed environments left (see clean_stale_states); running ones are untouched."""
    clean_stale_states()
    say("cleaned up after every environment whose supervisor is gone")
    return 0


def cmd_status() -> int:
    pid = current_pid()
    if pid is None or not CURRENT_ENV.exists():
        print("not running")
        return 1
    print(f"running (supervisor pid {pid}); env file: {CURRENT_ENV}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-node", action="store_true",
                        help="without the node (kube-scheduler, kubelet, kube-proxy, containerd): "
                             "pods stay Pending")
    parser.add_argument("command", choices=["build", "run", "up", "down", "clean", "status", "supervise"])
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    rest = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    with_node = not ns.no_node
    if ns.command == "build":
        bins, venv, node_bins = build_all(with_node)
        say(f"binaries in {bins}" + (f" and {node_bins}" if node_bins else "")
            + f"; virtualenv in {venv}")
        return 0
    if ns.command == "run":
        return cmd_run(rest, with_node)
    if ns.command == "up":
        return cmd_up(with_node)
    if ns.command == "down":
        return cmd_down()
    if ns.command == "clean":
        return cmd_clean()
    if ns.command == "status":
        return cmd_status()
    return cmd_supervise(with_node)


if __name__ == "__main__":
    sys.exit(main())
