"""Writes OCI image layouts and OCI archives, reproducibly, with the Python standard library only.

An image is described by its layers (lists of `Entry`: regular files, directories and symlinks
with their path in the image, content, mode and owner), an image configuration (user,
entrypoint, command, environment, working directory, labels) and a reference name. The same
description always gives the same bytes, so the same manifest digest:

- tar entries are sorted by path, every parent directory is written before its children, and
  every entry has a fixed mtime (SOURCE_DATE_EPOCH), numeric owner and empty user/group names;
- layers are gzip-compressed at a fixed level with a zero mtime and no file name in the header;
- every JSON document is canonical: sorted keys, no insignificant whitespace, UTF-8;
- the archive itself (a tar of the OCI image layout) follows the same tar rules.

The archive's index.json names the image twice, as `ctr images import` and other OCI tools
expect: `org.opencontainers.image.ref.name` holds the tag and `io.containerd.image.name` the
full reference.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import posixpath
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Iterable

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

GZIP_LEVEL = 9


@dataclasses.dataclass(frozen=True)
class Entry:
    """One entry of a layer: a regular file, a directory or a symlink.

    `path` is absolute inside the image. A file takes its content from `data` (bytes) or from
    `source` (a path on this machine, read at build time); a symlink points at `target`.
    """

    path: str
    kind: str = "file"
    data: bytes | None = None
    source: str | os.PathLike | None = None
    target: str | None = None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    def content(self) -> bytes:
        """The bytes of a regular file."""
        if self.data is not None:
            return self.data
        if self.source is not None:
            return Path(self.source).read_bytes()
        return b""


def file(path: str, *, data: bytes | None = None, source=None, mode: int = 0o644,
         uid: int = 0, gid: int = 0) -> Entry:
    """A regular file at `path`, from `data` or from the file `source`."""
    if (data is None) == (source is None):
        raise ValueError(f"{path}: give exactly one of data and source")
    return Entry(path=path, kind="file", data=data, source=source, mode=mode, uid=uid, gid=gid)


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    """A directory at `path`."""
    return Entry(path=path, kind="dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    """A symbolic link at `path` pointing at `target`."""
    return Entry(path=path, kind="symlink", target=target, mode=0o777)


def source_date_epoch(repo: str | os.PathLike | None = None) -> int:
    """The build's timestamp: $SOURCE_DATE_EPOCH, else the git commit time of HEAD, else 0."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct"],
            cwd=repo, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return int(out) if out else 0
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def canonical_json(value) -> bytes:
    """The canonical encoding of a JSON document: sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """The OCI digest (`sha256:<hex>`) of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _normalise(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"{path}: paths in an image are absolute")
    norm = posixpath.normpath(path)
    if norm == "/" or ".." in path.split("/"):
        raise ValueError(f"{path}: not a path inside the image")
    return norm.lstrip("/")


def _with_parents(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Entries by normalised path, with a 0755 root-owned directory for every missing parent."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        name = _normalise(entry.path)
        if name in by_path:
            raise ValueError(f"/{name}: given twice")
        by_path[name] = entry
    for name in list(by_path):
        parent = posixpath.dirname(name)
        while parent:
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = directory("/" + parent)
            elif existing.kind != "dir":
                raise ValueError(f"/{parent}: is not a directory but has /{name} under it")
            parent = posixpath.dirname(parent)
    return by_path


def _tar_info(name: str, kind: str, size: int, mode: int, uid: int, gid: int,
              mtime: int, target: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                 "symlink": tarfile.SYMTYPE}[kind]
    info.size = size if kind == "file" else 0
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = mtime
    if target is not None:
        info.linkname = target
    return info


def layer_tar(entries: Iterable[Entry], mtime: int) -> bytes:
    """The uncompressed tar of one layer, byte-for-byte the same for the same entries."""
    by_path = _with_parents(entries)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(by_path):
            entry = by_path[name]
            if entry.kind == "file":
                data = entry.content()
                info = _tar_info(name, "file", len(data), entry.mode, entry.uid, entry.gid, mtime)
                tar.addfile(info, io.BytesIO(data))
            elif entry.kind == "dir":
                tar.addfile(_tar_info(name, "dir", 0, entry.mode, entry.uid, entry.gid, mtime))
            elif entry.kind == "symlink":
                if not entry.target:
                    raise ValueError(f"/{name}: a symlink needs a target")
                tar.addfile(_tar_info(name, "symlink", 0, 0o777, entry.uid, entry.gid, mtime,
                                      entry.target))
            else:
                raise ValueError(f"/{name}: unknown entry kind {entry.kind!r}")
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """`data` gzip-compressed at a fixed level, with mtime 0 and no file name in the header."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", compresslevel=GZIP_LEVEL,
                       mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def rfc3339(epoch: int) -> str:
    """`epoch` (seconds) as an RFC 3339 UTC timestamp."""
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Config:
    """The runtime part of an image configuration (the OCI config's `config` object)."""

    user: str = ""
    entrypoint: list[str] = dataclasses.field(default_factory=list)
    cmd: list[str] = dataclasses.field(default_factory=list)
    env: list[str] = dataclasses.field(default_factory=list)
    working_dir: str = ""
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    stop_signal: str = ""

    def to_json(self) -> dict:
        """The OCI `config` object, leaving out empty fields."""
        out: dict = {}
        if self.user:
            out["User"] = self.user
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.env:
            out["Env"] = list(self.env)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: its entries and a line for the config's history."""

    entries: tuple[Entry, ...]
    comment: str = ""


@dataclasses.dataclass(frozen=True)
class Built:
    """The result of building an image: digests and sizes, and the blobs by digest."""

    ref: str
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]
    compressed_size: int
    blobs: dict[str, bytes]
    index: bytes

    def summary(self) -> dict:
        """What the build prints: name, digest and the compressed size."""
        return {
            "ref": self.ref,
            "digest": self.manifest_digest,
            "config": self.config_digest,
            "layers": list(self.layer_digests),
            "compressed_size": self.compressed_size,
        }


def split_ref(ref: str) -> tuple[str, str]:
    """(`repository`, `tag`) of a reference `host/path:tag`."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon <= slash or colon == len(ref) - 1:
        raise ValueError(f"{ref}: a reference needs a tag")
    return ref[:colon], ref[colon + 1:]


def build(layers: Iterable[Layer], config: Config, ref: str, *, epoch: int,
          architecture: str = "amd64", os_name: str = "linux") -> Built:
    """Builds the image's blobs (layers, config, manifest) and its index.json, in memory."""
    _, tag = split_ref(ref)
    blobs: dict[str, bytes] = {}
    layer_descriptors = []
    diff_ids = []
    history = []
    created = rfc3339(epoch)
    for layer in layers:
        raw = layer_tar(layer.entries, epoch)
        compressed = gzip_bytes(raw)
        digest = sha256_digest(compressed)
        blobs[digest] = compressed
        diff_ids.append(sha256_digest(raw))
        layer_descriptors.append(
            {"mediaType": MEDIA_LAYER_GZIP, "digest": digest, "size": len(compressed)})
        step = {"created": created, "created_by": "deploy/image/oci.py"}
        if layer.comment:
            step["comment"] = layer.comment
        history.append(step)
    image_config = {
        "architecture": architecture,
        "os": os_name,
        "created": created,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_bytes = canonical_json(image_config)
    config_digest = sha256_digest(config_bytes)
    blobs[config_digest] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": layer_descriptors,
    }
    manifest_bytes = canonical_json(manifest)
    manifest_digest = sha256_digest(manifest_bytes)
    blobs[manifest_digest] = manifest_bytes
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": architecture, "os": os_name},
            "annotations": {ANNOTATION_REF_NAME: tag, ANNOTATION_CONTAINERD_NAME: ref},
        }],
    }
    compressed_size = (sum(d["size"] for d in layer_descriptors) + len(config_bytes)
                       + len(manifest_bytes))
    return Built(
        ref=ref,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layer_digests=tuple(d["digest"] for d in layer_descriptors),
        diff_ids=tuple(diff_ids),
        compressed_size=compressed_size,
        blobs=blobs,
        index=canonical_json(index),
    )


def _layout_files(built: Built) -> dict[str, bytes]:
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": built.index,
    }
    for digest, data in built.blobs.items():
        algorithm, hexdigest = digest.split(":", 1)
        files[f"blobs/{algorithm}/{hexdigest}"] = data
    return files


def write_archive(built: Built, out: str | os.PathLike, *, epoch: int) -> None:
    """Writes the image as an OCI archive: a tar of its OCI image layout, written atomically."""
    entries = [file("/" + name, data=data) for name, data in _layout_files(built).items()]
    data = layer_tar(entries, epoch)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)


def write_layout(built: Built, directory_path: str | os.PathLike) -> None:
    """Writes the image as an OCI image layout directory."""
    root = Path(directory_path)
    for name, data in _layout_files(built).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_archive(path: str | os.PathLike) -> dict[str, bytes]:
    """The files of an OCI archive by name (for checks and tests)."""
    with tarfile.open(path, mode="r:") as tar:
        out = {}
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[member.name] = extracted.read()
        return out


def extract_rootfs(archive: str | os.PathLike, dest: str | os.PathLike) -> dict:
    """Unpacks the image's layers in order into `dest` and returns its config.

    Only for images this module wrote (no whiteouts, no hard links); entries keep their
    numeric owners and modes.
    """
    files = read_archive(archive)
    index = json.loads(files["index.json"])
    manifest_digest = index["manifests"][0]["digest"]
    blob = lambda d: files["blobs/" + d.replace(":", "/", 1)]  # noqa: E731
    manifest = json.loads(blob(manifest_digest))
    config = json.loads(blob(manifest["config"]["digest"]))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"])), mode="r:gz") as tar:
            for member in tar.getmembers():
                target = dest / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.issym():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.is_symlink() or target.exists():
                        target.unlink()
                    os.symlink(member.linkname, target)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    target.write_bytes(extracted.read())
                else:
                    raise ValueError(f"{member.name}: unexpected tar entry type")
                if not member.issym():
                    os.chmod(target, member.mode)
                    if os.geteuid() == 0:
                        os.chown(target, member.uid, member.gid)
                else:
                    if os.geteuid() == 0:
                        os.lchown(target, member.uid, member.gid)
    return config
