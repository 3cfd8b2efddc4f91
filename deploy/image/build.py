#!/usr/bin/env python3
"""Builds Lockstep's OCI images as OCI archives, without a container daemon, reproducibly.

Subcommands:

  lockstep --binary PATH --out FILE.tar   the Lockstep image (lockstep.invalid/lockstep:<version>)
  pause --out FILE.tar                    the local node's pod sandbox image
                                          (lockstep.invalid/pause:3.10)
  app --out FILE.tar                      a tiny application image for tests and the demo
                                          (lockstep.invalid/app:1, Debian's static busybox)
  sbom --archive FILE.tar --packages P.json --cargo-cyclonedx BIN --out FILE.cdx.json
                                          the CycloneDX SBOM of the Lockstep image
  run --archive FILE.tar [ARG...]         runs the image's entrypoint with ARGs from the
                                          image's files only: read-only root, the image's user

Each build prints one JSON line with the reference, the manifest digest and the compressed size
(layers + config + manifest). Fetched inputs are cached under ~/.cache/lockstep/images/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
from pathlib import Path

sys.dont_write_bytecode = True  # nothing is written into the clone
sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LOCKSTEP_IMAGE_CACHE", Path.home() / ".cache/lockstep/images"))

NONROOT = 65532
PAUSE_USER = 65535
LOCKSTEP_REF = "lockstep.invalid/lockstep"
PAUSE_REF = "lockstep.invalid/pause:3.10"
APP_REF = "lockstep.invalid/app:1"
# Debian's busybox-static has no printenv applet: `env` and `sh -c 'echo "$NAME"'` stand in.
APP_APPLETS = ("sh", "echo", "cat", "env", "sleep")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd: list[str], **kwargs) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, **kwargs).stdout
    except FileNotFoundError:
        fail(f"{cmd[0]} is not installed")
    except subprocess.CalledProcessError as err:
        fail(f"{' '.join(cmd)} failed: {err.stderr.strip()}")
    raise AssertionError("unreachable")


def workspace() -> dict:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]


def git_revision() -> str:
    """HEAD's commit, with `-dirty` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty.strip() else "")


def labels(title: str, description: str, version: str, epoch: int) -> dict[str, str]:
    ws = workspace()
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.description": description,
        "org.opencontainers.image.source": ws["repository"],
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": git_revision(),
        "org.opencontainers.image.licenses": ws["license"],
        "org.opencontainers.image.created": oci.rfc3339(epoch),
    }


def finish(built: oci.Built, out: str, epoch: int, extra: dict | None = None) -> None:
    oci.write_archive(built, out, epoch=epoch)
    summary = built.summary()
    summary["archive"] = str(Path(out).resolve())
    summary.update(extra or {})
    print(json.dumps(summary, sort_keys=True))


# --- Debian packages --------------------------------------------------------------------------


class Packages:
    """The Debian packages files are copied from, each file checked against dpkg's md5sums."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict] = {}

    def owner(self, path: str) -> str:
        """The installed package that ships `path` (also under its merged-/usr name)."""
        candidates = [path]
        for short, long in (("/lib/", "/usr/lib/"), ("/lib64/", "/usr/lib64/")):
            if path.startswith(short):
                candidates.append(long + path[len(short):])
            elif path.startswith(long):
                candidates.append(short + path[len(long):])
        for candidate in candidates:
            result = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True,
                                    text=True)
            if result.returncode == 0:
                for line in result.stdout.splitlines():
                    name, _, owned = line.partition(": ")
                    if owned.strip() == candidate and "," not in name:
                        return self._record(name.strip(), candidate)
        fail(f"{path}: no installed Debian package ships it (dpkg-query -S)")
        raise AssertionError("unreachable")

    def _record(self, name: str, owned_path: str) -> str:
        base = name.split(":")[0]
        if base not in self.by_name:
            fields = run(["dpkg-query", "-W", "-f",
                          "${Package}\t${Version}\t${Architecture}\t${source:Package}\t"
                          "${source:Version}", name]).split("\t")
            self.by_name[base] = {
                "name": fields[0],
                "version": fields[1],
                "architecture": fields[2],
                "source": fields[3],
                "source_version": fields[4],
                "dpkg_name": name,
                "status": run(["dpkg-query", "-s", name]),
                "files": [],
            }
        self.by_name[base]["files"].append(owned_path)
        return base

    def _md5sums(self, base: str) -> dict[str, str]:
        pkg = self.by_name[base]
        if "md5sums" not in pkg:
            md5sums = Path(f"/var/lib/dpkg/info/{pkg['dpkg_name']}.md5sums")
            if not md5sums.exists():
                md5sums = Path(f"/var/lib/dpkg/info/{base}.md5sums")
            sums = {}
            for line in md5sums.read_text().splitlines():
                digest, _, rel = line.partition("  ")
                sums["/" + rel] = digest
            pkg["md5sums"] = sums
        return pkg["md5sums"]

    def verify(self, base: str, owned_path: str, data: bytes) -> None:
        """Fails unless `data` is the file the package installed at `owned_path`."""
        want = self._md5sums(base).get(owned_path)
        if want is None:
            fail(f"{owned_path}: not in the md5sums of {base}")
        if hashlib.md5(data).hexdigest() != want:
            fail(f"{owned_path}: differs from what {base} installed (md5sums)")

    def copy(self, path: str, owner: str | None = None) -> bytes:
        """The content of `path`, checked against the package that installed it (`owner`, or
        the one dpkg-query -S names)."""
        if owner is None:
            base = self.owner(path)
        else:
            base = self._record(owner, path)
        data = Path(path).read_bytes()
        self.verify(base, self.by_name[base]["files"][-1], data)
        return data

    def metadata_entries(self) -> list[oci.Entry]:
        """Each package's copyright file and dpkg status (read by image scanners)."""
        entries = []
        for base, pkg in sorted(self.by_name.items()):
            status = pkg["status"].rstrip("\n") + "\n"
            entries.append(oci.file(f"/var/lib/dpkg/status.d/{base}", data=status.encode()))
            copyright_file = Path(f"/usr/share/doc/{base}/copyright")
            if copyright_file.exists():
                entries.append(oci.file(f"/usr/share/doc/{base}/copyright",
                                        data=copyright_file.read_bytes()))
        return entries

    def summary(self) -> list[dict]:
        return [{k: pkg[k] for k in ("name", "version", "architecture", "source",
                                     "source_version", "files")}
                for _, pkg in sorted(self.by_name.items())]


def needed_libraries(binary: Path) -> list[str]:
    """The shared objects the dynamic loader maps for `binary`, as paths (ldd)."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    text = result.stdout + result.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if result.returncode != 0:
        fail(f"ldd {binary}: {text.strip()}")
    paths = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            fail(f"{binary}: library not found: {line}")
        match = re.match(r"^(\S+) => (\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            paths.append(match.group(2))
            continue
        match = re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            paths.append(match.group(1))
    return paths


def library_entries(paths: list[str], packages: Packages) -> list[oci.Entry]:
    """The libraries at the paths the loader uses; a symlink stays a symlink to its target."""
    entries: dict[str, oci.Entry] = {}
    todo = list(paths)
    while todo:
        path = todo.pop()
        if path in entries:
            continue
        if os.path.islink(path):
            target = os.readlink(path)
            entries[path] = oci.symlink(path, target)
            packages.owner(path)
            todo.append(os.path.normpath(os.path.join(os.path.dirname(path), target)))
        else:
            entries[path] = oci.file(path, data=packages.copy(path), mode=0o755)
    return [entries[p] for p in sorted(entries)]


def ca_bundle(packages: Packages) -> bytes:
    """Debian's ca-certificates bundle: every certificate the package ships, in name order."""
    listed = run(["dpkg-query", "-L", "ca-certificates"]).splitlines()
    certs = sorted(p for p in listed
                   if p.startswith("/usr/share/ca-certificates/") and p.endswith(".crt"))
    if not certs:
        fail("the Debian package ca-certificates ships no certificates")
    out = b""
    for cert in certs:
        data = packages.copy(cert, owner="ca-certificates")
        out += data if data.endswith(b"\n") else data + b"\n"
    return out


def nonroot_files() -> list[oci.Entry]:
    passwd = (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    )
    group = f"root:x:0:\nnonroot:x:{NONROOT}:\nnobody:x:65534:\n"
    return [
        oci.file("/etc/passwd", data=passwd.encode()),
        oci.file("/etc/group", data=group.encode()),
        oci.file("/etc/nsswitch.conf", data=b"passwd: files\ngroup: files\nhosts: files dns\n"),
        oci.directory("/home/nonroot", mode=0o700, uid=NONROOT, gid=NONROOT),
        oci.directory("/tmp", mode=0o1777),
    ]


# --- the images -------------------------------------------------------------------------------


def build_lockstep(args) -> None:
    binary = Path(args.binary)
    if not binary.is_file():
        fail(f"{binary}: no such binary (build it with cargo build --release -p lockstep)")
    version = workspace()["version"]
    epoch = oci.source_date_epoch(REPO)
    packages = Packages()
    base = library_entries(needed_libraries(binary), packages)
    base.append(oci.file(CA_BUNDLE, data=ca_bundle(packages)))
    base.append(oci.file("/etc/os-release", data=packages.copy("/usr/lib/os-release")))
    base += nonroot_files()
    base += packages.metadata_entries()
    config = oci.Config(
        user=f"{NONROOT}:{NONROOT}",
        entrypoint=["/lockstep"],
        cmd=["run"],
        env=[f"SSL_CERT_FILE={CA_BUNDLE}", "HOME=/home/nonroot"],
        working_dir="/",
        labels=labels("lockstep",
                      "Keeps Kubernetes Secrets in sync with external secret stores and rolls "
                      "the workloads that use them.", version, epoch),
    )
    layers = [
        oci.Layer(tuple(base), "Debian files: shared libraries, CA certificates, users"),
        oci.Layer((oci.file("/lockstep", source=binary, mode=0o755),), "the lockstep binary"),
    ]
    ref = f"{LOCKSTEP_REF}:{version}"
    built = oci.build(layers, config, ref, epoch=epoch)
    packages_out = args.packages_out or re.sub(r"(\.oci)?\.tar$", "", args.out) + ".packages.json"
    record = {
        "ref": ref,
        "digest": built.manifest_digest,
        "os_release": Path("/usr/lib/os-release").read_text(),
        "packages": packages.summary(),
        "binary_sha256": hashlib.sha256(binary.read_bytes()).hexdigest(),
    }
    Path(packages_out).parent.mkdir(parents=True, exist_ok=True)
    Path(packages_out).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    finish(built, args.out, epoch, {"packages": packages_out})


def build_pause(args) -> None:
    epoch = oci.source_date_epoch(REPO)
    module = REPO / "testenv/go/pause"
    with tempfile.TemporaryDirectory(prefix="lockstep-pause-") as tmp:
        env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOOS="linux",
                   GOARCH="amd64", GOFLAGS="-mod=mod")
        out = Path(tmp) / "pause"
        run(["go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", str(out), "."],
            cwd=module, env=env)
        data = out.read_bytes()
    go_version = run(["go", "env", "GOVERSION"], env=dict(os.environ, GOTOOLCHAIN="local"))
    config = oci.Config(
        user=f"{PAUSE_USER}:{PAUSE_USER}",
        entrypoint=["/pause"],
        labels=labels("pause", "The pod sandbox of Lockstep's local test node.", "3.10", epoch),
    )
    layer = oci.Layer((oci.file("/pause", data=data, mode=0o755),),
                      f"testenv/go/pause built with {go_version.strip()}")
    built = oci.build([layer], config, PAUSE_REF, epoch=epoch)
    finish(built, args.out, epoch)


def busybox_deb() -> Path:
    """Debian's busybox-static package, fetched once with apt-get download into the cache."""
    def candidate() -> str:
        policy = run(["apt-cache", "policy", "busybox-static"])
        match = re.search(r"Candidate:\s*(\S+)", policy)
        return match.group(1) if match and match.group(1) != "(none)" else ""

    version = candidate()
    if not version:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        version = candidate()
    if not version:
        fail("apt-cache knows no busybox-static package")
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("busybox-static_*.deb")):
        if run(["dpkg-deb", "-f", str(deb), "Version"]).strip() == version:
            return deb
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        run(["apt-get", "download", f"busybox-static={version}"], cwd=tmp)
        fetched = sorted(Path(tmp).glob("busybox-static_*.deb"))
        if len(fetched) != 1:
            fail("apt-get download busybox-static gave no package")
        final = debs / fetched[0].name
        fetched[0].replace(final)
    return final


def build_app(args) -> None:
    epoch = oci.source_date_epoch(REPO)
    deb = busybox_deb()
    version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    with tempfile.TemporaryDirectory(prefix="lockstep-busybox-") as tmp:
        run(["dpkg-deb", "-x", str(deb), tmp])
        busybox = (Path(tmp) / "bin/busybox").read_bytes()
        applets = run([str(Path(tmp) / "bin/busybox"), "--list"]).split()
        missing = [a for a in APP_APPLETS if a not in applets]
        if missing:
            fail(f"busybox-static {version} has no applet {', '.join(missing)}")
        copyright_file = Path(tmp) / "usr/share/doc/busybox-static/copyright"
        copyright_data = copyright_file.read_bytes() if copyright_file.exists() else None
    entries = [oci.file("/bin/busybox", data=busybox, mode=0o755)]
    entries += [oci.symlink(f"/bin/{applet}", "busybox") for applet in APP_APPLETS]
    if copyright_data is not None:
        entries.append(oci.file("/usr/share/doc/busybox-static/copyright", data=copyright_data))
    entries.append(oci.directory("/tmp", mode=0o1777))
    config = oci.Config(
        user=f"{NONROOT}:{NONROOT}",
        cmd=["/bin/sh"],
        env=["PATH=/bin"],
        labels=labels("app", f"A tiny application image for Lockstep's tests and demo "
                             f"(Debian busybox-static {version}).", "1", epoch),
    )
    built = oci.build([oci.Layer(tuple(entries), f"Debian busybox-static {version}")], config,
                      APP_REF, epoch=epoch)
    finish(built, args.out, epoch, {"busybox_static": version})


# --- the SBOM ---------------------------------------------------------------------------------


def deb_purl(pkg: dict, distro: str) -> str:
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    purl = f"pkg:deb/debian/{quote(pkg['name'])}@{quote(pkg['version'])}"
    purl += f"?arch={quote(pkg['architecture'])}&distro={quote(distro)}"
    if pkg["source"] and pkg["source"] != pkg["name"]:
        upstream = pkg["source"]
        if pkg["source_version"] and pkg["source_version"] != pkg["version"]:
            upstream += "@" + pkg["source_version"]
        purl += f"&upstream={quote(upstream)}"
    return purl


def build_sbom(args) -> None:
    record = json.loads(Path(args.packages).read_text())
    files = oci.read_archive(args.archive)
    index = json.loads(files["index.json"])
    digest = index["manifests"][0]["digest"]
    if digest != record["digest"]:
        fail(f"{args.packages} describes {record['digest']}, the archive holds {digest}")
    ref = record["ref"]
    os_release = dict(
        line.split("=", 1) for line in record["os_release"].splitlines() if "=" in line)
    os_release = {k: v.strip('"') for k, v in os_release.items()}
    distro = f"{os_release.get('ID', 'debian')}-{os_release.get('VERSION_ID', '')}".rstrip("-")

    with tempfile.TemporaryDirectory(prefix="lockstep-sbom-") as tmp:
        # cargo-cyclonedx writes beside each Cargo.toml: run it on a copy of the workspace's
        # manifests and sources, never in the clone.
        copy = Path(tmp) / "src"
        tracked = run(["git", "ls-files", "-z", "--cached", "--", "Cargo.toml", "Cargo.lock",
                       "crates", "tests/e2e"], cwd=REPO).split("\0")
        for rel in filter(None, tracked):
            source = REPO / rel
            if source.is_file():
                dest = copy / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
        env = dict(os.environ)
        env.pop("CARGO_TARGET_DIR", None)
        env["CARGO_TARGET_DIR"] = str(Path(tmp) / "target")
        subprocess.run(
            [args.cargo_cyclonedx, "cyclonedx", "--manifest-path",
             str(copy / "crates/lockstep/Cargo.toml"), "--format", "json",
             "--spec-version", "1.5", "--target", "x86_64-unknown-linux-gnu",
             "--override-filename", "lockstep.cdx", "-q"],
            cwd=copy, env=env, check=True)
        bom = json.loads((copy / "crates/lockstep/lockstep.cdx.json").read_text())

    epoch = oci.source_date_epoch(REPO)
    metadata = bom.setdefault("metadata", {})
    metadata["timestamp"] = oci.rfc3339(epoch)
    crate = metadata.get("component", {})
    repo_name, tag = oci.split_ref(ref)
    image_ref = f"{ref}@{digest}"
    metadata["component"] = {
        "type": "container",
        "bom-ref": image_ref,
        "name": repo_name,
        "version": tag,
        "description": "The Lockstep OCI image",
        "hashes": [{"alg": "SHA-256", "content": digest.split(":", 1)[1]}],
        "purl": f"pkg:oci/lockstep@{urllib.parse.quote(digest, safe='')}"
                f"?repository_url={urllib.parse.quote(repo_name, safe='')}"
                f"&tag={urllib.parse.quote(tag, safe='')}",
        "properties": [
            {"name": "lockstep:image:digest", "value": digest},
            {"name": "lockstep:image:ref", "value": ref},
            {"name": "lockstep:image:binary-sha256", "value": record["binary_sha256"]},
        ],
        "components": [crate] if crate else [],
    }
    components = bom.setdefault("components", [])
    deb_refs = []
    for pkg in record["packages"]:
        purl = deb_purl(pkg, distro)
        deb_refs.append(purl)
        components.append({
            "type": "library" if pkg["name"] != "ca-certificates" else "data",
            "bom-ref": purl,
            "name": pkg["name"],
            "version": pkg["version"],
            "purl": purl,
            "publisher": "Debian",
            "properties": [{"name": "lockstep:deb:files-copied", "value": str(len(pkg["files"]))}]
                          + ([{"name": "lockstep:deb:file", "value": path} for path in pkg["files"]]
                             if len(pkg["files"]) <= 10 else []),
        })
    dependencies = bom.setdefault("dependencies", [])
    dependencies.append({"ref": image_ref,
                         "dependsOn": ([crate["bom-ref"]] if crate.get("bom-ref") else [])
                         + deb_refs})
    bom.pop("serialNumber", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"sbom": str(out.resolve()), "image": digest,
                      "components": len(components)}, sort_keys=True))


# --- running an image's entrypoint ------------------------------------------------------------


def run_image(args) -> None:
    """Runs the entrypoint in a private mount namespace, chrooted into the image's files mounted
    read-only, as the image's user, with only the image's environment."""
    if os.geteuid() != 0:
        fail("run needs root (a private mount namespace and chroot)")
    with tempfile.TemporaryDirectory(prefix="lockstep-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        config = oci.extract_rootfs(args.archive, rootfs)["config"]
        user = config.get("User", "0:0")
        uid, _, gid = user.partition(":")
        gid = gid or uid
        extra = args.args[1:] if args.args[:1] == ["--"] else args.args
        argv = config.get("Entrypoint", []) + (extra or config.get("Cmd", []))
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" '
                  '&& exec env -i "$@"')
        cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
               str(rootfs), *config.get("Env", []), chroot, f"--userspec={uid}:{gid}",
               f"--groups={gid}", str(rootfs), *argv]
        result = subprocess.run(cmd)
    sys.exit(result.returncode)


def report(args) -> None:
    """One line per image of a file of build summaries: reference, digest, compressed size."""
    for line in Path(args.summaries).read_text().splitlines():
        s = json.loads(line)
        print(f"{s['ref']:30} {s['digest']}  {s['compressed_size'] / 1e6:6.2f} MB  "
              f"{s['archive']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lockstep", help="the Lockstep image")
    p.add_argument("--binary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--packages-out", help="where to record the Debian packages copied "
                                          "(default: beside --out, .packages.json)")
    p.set_defaults(func=build_lockstep)
    p = sub.add_parser("pause", help="the pod sandbox image")
    p.add_argument("--out", required=True)
    p.set_defaults(func=build_pause)
    p = sub.add_parser("app", help="the tiny application image")
    p.add_argument("--out", required=True)
    p.set_defaults(func=build_app)
    p = sub.add_parser("sbom", help="the CycloneDX SBOM of the Lockstep image")
    p.add_argument("--archive", required=True)
    p.add_argument("--packages", required=True)
    p.add_argument("--cargo-cyclonedx", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=build_sbom)
    p = sub.add_parser("run", help="run an image's entrypoint from its files only")
    p.add_argument("--archive", required=True)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run_image)
    p = sub.add_parser("report", help="print a file of build summaries as a table")
    p.add_argument("summaries")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
