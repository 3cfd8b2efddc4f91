"""The local node: kubelet, kube-proxy, containerd + runc and the CNI plugins, so pods really run.

Design (see the README, "The node"):
- The node lives in a network namespace of its own, joined to the machine by one veth pair:
  `<HOST_IP>` on the machine's side, `<NODE_IP>` on the node's. Pods sit on a bridge inside the
  node's namespace. Neither the node nor its pods have a default route: they reach the machine's
  side of the veth and nothing else. The machine keeps IP forwarding off, so no packet of a pod
  can ever be forwarded off the machine.
- The servers listen on loopback only. A small relay (`relay.py`) listens on `<HOST_IP>` and
  forwards to the same port on 127.0.0.1 for the apiserver, OpenBao and the AWS proxy.
- The apiserver advertises `<HOST_IP>` as the endpoint of the `kubernetes` Service, and
  kube-proxy (iptables mode, inside the node's namespace) turns the Service's ClusterIP into it,
  so pods use in-cluster configuration exactly as in a cluster.
- containerd, kubelet and kube-proxy share one private mount namespace (held by a `holder`
  process) with private tmpfs mounts for every directory they write, and one cgroup subtree
  `/lockstep-node-<x>` (containerd's shims and every container included). Stopping the node, or
  cleaning up after a supervisor that was killed, kills every process of that subtree; the mount
  namespace, its mounts and the pods' network namespaces disappear with the last of them, then the
  cgroups, the node's network namespace and the veth pair are removed.
- Every image is local: the pause image, the test application image and Lockstep's image are
  OCI archives built by `deploy/image/build.py`, imported into containerd at start. Nothing is
  ever pulled.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

NODE_NAME = "lockstep-node"
SERVICE_CIDR = "10.96.0.0/24"
CLUSTER_IP = "10.96.0.1"
PAUSE_IMAGE = "lockstep.invalid/pause:3.10"
CGROUP_BASE = Path("/sys/fs/cgroup")

# Debian packages the node needs, and a file each installs.
DEBIAN_PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
}
CNI_BIN_DIR = "/usr/lib/cni"

# Directories the node's processes write outside their own state folder: each gets a private
# tmpfs in the node's mount namespace, so nothing of the node ever lands on the machine's disk.
PRIVATE_DIRS = ["/run/netns", "/run/containerd", "/var/log/containers", "/var/lib/cni"]


def ensure_packages(say, fail) -> None:
    missing = [p for p, f in DEBIAN_PACKAGES.items() if not Path(f).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        fail(f"the node needs the Debian packages {' '.join(missing)} (and root to run them)")
    say(f"installing {' '.join(missing)} from Debian for the node")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def can_run() -> str | None:
    """Why this machine cannot run the node, or None."""
    if os.geteuid() != 0:
        return "the node needs root (network namespaces, cgroups, mounts)"
    if not (CGROUP_BASE / "pids").is_dir() or not (CGROUP_BASE / "freezer").is_dir():
        return "the node needs cgroup v1 with the pids and freezer controllers mounted"
    if read_sysctl("net/ipv4/ip_forward") != "0":
        return ("IP forwarding is on on this machine: the node needs it off, so that no packet of "
                "a pod can be forwarded off the machine")
    return None


def read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


# --------------------------------------------------------------------------------------------
# addresses


@dataclass
class NodeNet:
    """The addresses and names of one node (x picks them, unique among running environments)."""

    x: int
    netns: str
    host_if: str
    node_if: str
    host_ip: str
    node_ip: str
    pod_cidr: str
    cgroup: str

    @staticmethod
    def for_index(x: int) -> "NodeNet":
        return NodeNet(
            x=x, netns=f"lockstep-node-{x}", host_if=f"lsh{x}", node_if=f"lsn{x}",
            host_ip=f"10.213.{x}.1", node_ip=f"10.213.{x}.2", pod_cidr=f"10.214.{x}.0/24",
            cgroup=f"lockstep-node-{x}",
        )


def allocate(state: Path, lock_dir: Path) -> NodeNet:
    """Creates the node's network namespace and veth pair, recording them in state/node.json
    before anything else, so a cleanup after a crash finds them."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "node.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        links = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
        used = {int(m) for m in re.findall(r"\blsh(\d+)[@:]", links)}
        netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
        x = next((i for i in range(1, 251)
                  if i not in used and f"lockstep-node-{i}" not in netns), None)
        if x is None:
            raise RuntimeError("no free node address: 250 nodes are running")
        net = NodeNet.for_index(x)
        (state / "node.json").write_text(json.dumps(asdict(net)))
        ip("netns", "add", net.netns)
        ip("link", "add", net.host_if, "type", "veth", "peer", "name", net.node_if)
    ip("link", "set", net.node_if, "netns", net.netns)
    ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
    ip("link", "set", net.host_if, "up")
    ip("-n", net.netns, "link", "set", "lo", "up")
    ip("-n", net.netns, "addr", "add", f"{net.node_ip}/30", "dev", net.node_if)
    ip("-n", net.netns, "link", "set", net.node_if, "up")
    # The machine reaches the pods (the apiserver's proxy to a pod) through the node.
    ip("route", "add", net.pod_cidr, "via", net.node_ip, "dev", net.host_if)
    # Inside the node's namespace only: pods' packets to the machine's side of the veth (the
    # Service ClusterIP after kube-proxy's DNAT) are forwarded from the bridge to the veth.
    subprocess.run(["ip", "netns", "exec", net.netns, "sysctl", "-q", "-w",
                    "net.ipv4.ip_forward=1"], check=True, capture_output=True)
    return net


# --------------------------------------------------------------------------------------------
# cgroups


def cgroup_hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (cpu, memory, pids, name=systemd, ...), not the v2 one."""
    out = []
    for d in sorted(CGROUP_BASE.iterdir()):
        if d.name == "unified" or not d.is_dir() or d.is_symlink():
            continue
        if (d / "cgroup.procs").exists():
            out.append(d)
    return out


def make_cgroups(net: NodeNet) -> None:
    """`/lockstep-node-<x>` (kubelet's cgroup root) and `/lockstep-node-<x>/system` (the node's
    own processes) in every hierarchy; cpuset ones get their parent's cpus and mems."""
    for h in cgroup_hierarchies():
        for rel in (net.cgroup, f"{net.cgroup}/system"):
            d = h / rel
            d.mkdir(exist_ok=True)
            if h.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text())


def join_cgroup(rel: str) -> None:
    """Runs in a child before exec: move this process into cgroup `rel` of every hierarchy."""
    pid = str(os.getpid())
    for h in cgroup_hierarchies():
        with open(h / rel / "cgroup.procs", "w") as f:
            f.write(pid)


def cgroup_pids(net: NodeNet) -> set[int]:
    pids: set[int] = set()
    root = CGROUP_BASE / "pids" / net.cgroup
    if not root.is_dir():
        return pids
    for dirpath, _, files in os.walk(root):
        if "cgroup.procs" in files:
            try:
                pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
            except OSError:
                pass
    return pids


def kill_cgroup(net: NodeNet, timeout: float = 20.0) -> None:
    """Kills every process of the node's subtree (frozen first, so none can fork away)."""
    freezer = CGROUP_BASE / "freezer" / net.cgroup / "freezer.state"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = cgroup_pids(net)
        if not pids:
            return
        try:
            freezer.write_text("FROZEN")
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            freezer.write_text("THAWED")
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"processes of the node survived SIGKILL: {sorted(cgroup_pids(net))}")


def remove_cgroups(net: NodeNet) -> None:
    # kubelet and runc also make the pods' cgroups in the unified (v2) hierarchy that systemd
    # mounts beside the v1 ones: those go too.
    unified = CGROUP_BASE / "unified"
    for h in cgroup_hierarchies() + ([unified] if unified.is_dir() else []):
        root = h / net.cgroup
        if not root.is_dir():
            continue
        # Deepest first: a cgroup is removed with rmdir once it has no children.
        dirs = sorted((Path(p) for p, _, _ in os.walk(root)), key=lambda p: len(p.parts),
                      reverse=True)
        for d in dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def teardown(state: Path) -> None:
    """Removes everything of the node recorded in state/node.json: processes, cgroups, the
    network namespace and the veth pair. Safe to call more than once, and after a crash."""
    try:
        net = NodeNet(**json.loads((state / "node.json").read_text()))
    except (OSError, ValueError, TypeError):
        return
    kill_cgroup(net)
    remove_cgroups(net)
    subprocess.run(["ip", "link", "del", net.host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", net.netns], capture_output=True)
    (state / "node.json").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# configuration files


def containerd_config(root: Path) -> str:
    return f"""version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{root}/containerd/containerd.sock"

[ttrpc]
  address = "{root}/containerd/containerd.sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Lowering an OOM score needs CAP_SYS_RESOURCE, which this machine's root may lack: keep
  # containers' scores at or above containerd's own, as in a rootless or nested setup.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{root}/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{root}/cni/net.d"
    max_conf_num = 1
"""


def cni_config(net: NodeNet, root: Path) -> str:
    bridge_ip = net.pod_cidr.replace(".0/24", ".1")
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": "lockstep-pods",
        "plugins": [{
            "type": "bridge",
            "bridge": "lsbr0",
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": net.pod_cidr, "gateway": bridge_ip}]],
                # The default route of a pod leads into the node's namespace, which has none
                # itself: a pod reaches the node, the Service ClusterIPs and the machine's side
                # of the veth, and nothing else.
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": f"{root}/cni/ipam",
            },
        }],
    }, indent=2)


def kubelet_config(net: NodeNet, root: Path, ca: Path, cert: Path, key: Path,
                   port: int, healthz_port: int, runtime_sock: Path, resolv: Path) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{runtime_sock}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{net.cgroup}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        "failCgroupV1": False,
        "resolvConf": str(resolv),
        "clusterDomain": "cluster.local",
        "podLogsDir": str(root / "pod-logs"),
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "nodeStatusReportFrequency": "1m",
        "maxPods": 60,
        "shutdownGracePeriod": "0s",
        "localStorageCapacityIsolation": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "registerNode": True,
    }, indent=2)


def kube_proxy_config(net: NodeNet, kubeconfig: Path, metrics_port: int, healthz_port: int) -> str:
    return json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": net.node_ip,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "mode": "iptables",
        "clusterCIDR": net.pod_cidr,
        # The conntrack table is the machine's; kube-proxy leaves its size alone.
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": False, "syncPeriod": "30s", "minSyncPeriod": "0s"},
        "nodePortAddresses": [f"{net.node_ip}/32"],
    }, indent=2)
