//! The OCI archives `scripts/image` builds: the Lockstep image named by `LOCKSTEP_IMAGE_ARCHIVE`
//! (and `pause.oci.tar`, `app.oci.tar` beside it) is read as any OCI tool reads it, and its shape
//! is checked: content-addressed blobs, the config (user 65532:65532, entrypoint, labels), no
//! shell or package manager, every library the binary needs, the size limit; rebuilding it from
//! its own binary gives the same layers; `deploy/image/oci.py`'s unit tests pass.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_e2e::unique_name;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The image's compressed size (layers + config + manifest) may not pass this.
const MAX_COMPRESSED_BYTES: u64 = 25_000_000;
const LOCKSTEP_REF: &str = "lockstep.invalid/lockstep";
const UID_GID: &str = "65532:65532";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Lockstep image archive, from `LOCKSTEP_IMAGE_ARCHIVE`.
fn lockstep_archive() -> PathBuf {
    let path = std::env::var_os("LOCKSTEP_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .expect(
            "LOCKSTEP_IMAGE_ARCHIVE is not set: build the images with scripts/image and set it to \
         ~/.cache/lockstep/images/lockstep-<version>.oci.tar",
        );
    assert!(
        path.is_file(),
        "LOCKSTEP_IMAGE_ARCHIVE={}: no such file (build it with scripts/image)",
        path.display()
    );
    path
}

/// An archive `scripts/image` writes beside the Lockstep image.
fn sibling_archive(name: &str) -> PathBuf {
    let path = lockstep_archive().with_file_name(name);
    assert!(
        path.is_file(),
        "{}: missing; scripts/image writes it beside LOCKSTEP_IMAGE_ARCHIVE",
        path.display()
    );
    path
}

fn sha256(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// One entry of an image's filesystem, after its layers are applied in order.
#[derive(Debug, Clone)]
enum Node {
    File { data: Vec<u8>, mode: u32 },
    Dir { mode: u32, uid: u64 },
    Symlink(String),
}

/// An image read from an OCI archive: every blob checked against its digest.
struct Image {
    index: Value,
    manifest: Value,
    config: Value,
    manifest_size: u64,
    config_size: u64,
    layer_sizes: Vec<u64>,
    layer_digests: Vec<String>,
    fs: BTreeMap<String, Node>,
}

impl Image {
    fn read(path: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(path).expect("open archive"));
        for entry in archive.entries().expect("archive entries") {
            let mut entry = entry.expect("archive entry");
            if entry.header().entry_type().is_file() {
                let name = entry.path().expect("entry path").display().to_string();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read entry");
                files.insert(name, data);
            }
        }
        let layout: Value = serde_json::from_slice(&files["oci-layout"]).expect("oci-layout");
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        for (name, data) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(
                    sha256(data),
                    format!("sha256:{hex}"),
                    "{name}: content differs"
                );
            }
        }
        let blob = |descriptor: &Value| -> Vec<u8> {
            let digest = descriptor["digest"].as_str().expect("digest");
            let data = files
                .get(&format!("blobs/{}", digest.replacen(':', "/", 1)))
                .unwrap_or_else(|| panic!("blob {digest} is missing"))
                .clone();
            assert_eq!(
                Some(data.len() as u64),
                descriptor["size"].as_u64(),
                "{digest}: size"
            );
            data
        };
        let index: Value = serde_json::from_slice(&files["index.json"]).expect("index.json");
        let manifests = index["manifests"].as_array().expect("manifests");
        assert_eq!(manifests.len(), 1, "one image per archive");
        assert_eq!(
            manifests[0]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        let manifest_bytes = blob(&manifests[0]);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest");
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        let config_bytes = blob(&manifest["config"]);
        let config: Value = serde_json::from_slice(&config_bytes).expect("config");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(diff_ids.len(), layers.len());
        let mut fs = BTreeMap::new();
        let mut layer_sizes = Vec::new();
        let mut layer_digests = Vec::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            assert_eq!(
                layer["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            let compressed = blob(layer);
            layer_sizes.push(compressed.len() as u64);
            layer_digests.push(layer["digest"].as_str().expect("digest").to_string());
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(compressed.as_slice())
                .read_to_end(&mut raw)
                .expect("gunzip layer");
            assert_eq!(&Value::String(sha256(&raw)), diff_id, "diff_id of a layer");
            apply_layer(&mut fs, &raw);
        }
        Self {
            index,
            manifest,
            config,
            manifest_size: manifest_bytes.len() as u64,
            config_size: config_bytes.len() as u64,
            layer_sizes,
            layer_digests,
            fs,
        }
    }

    /// What a registry stores and a node pulls: compressed layers, config and manifest.
    fn compressed_size(&self) -> u64 {
        self.layer_sizes.iter().sum::<u64>() + self.config_size + self.manifest_size
    }

    fn runtime(&self) -> &Value {
        &self.config["config"]
    }

    fn label(&self, name: &str) -> &str {
        self.runtime()["Labels"][name]
            .as_str()
            .unwrap_or_else(|| panic!("label {name} is missing"))
    }

    fn annotation(&self, name: &str) -> &str {
        self.index["manifests"][0]["annotations"][name]
            .as_str()
            .unwrap_or_else(|| panic!("index annotation {name} is missing"))
    }

    /// The node at `path`, following symlinks in every component.
    fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => current.push(component),
            }
            let joined = current.join("/");
            match self.fs.get(&joined)? {
                Node::Symlink(target) => {
                    hops += 1;
                    assert!(hops < 40, "{path}: too many symlinks");
                    current.pop();
                    if target.starts_with('/') {
                        current.clear();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(String::from),
                    );
                }
                Node::Dir { .. } => {}
                Node::File { .. } if pending.is_empty() => {}
                Node::File { .. } => return None,
            }
        }
        let joined = current.join("/");
        let node = self.fs.get(&joined)?;
        Some((format!("/{joined}"), node))
    }

    fn file(&self, path: &str) -> &[u8] {
        match self.resolve(path) {
            Some((_, Node::File { data, .. })) => data,
            other => panic!("{path}: not a file in the image ({other:?})"),
        }
    }
}

fn apply_layer(fs: &mut BTreeMap<String, Node>, raw: &[u8]) {
    let mut archive = tar::Archive::new(raw);
    for entry in archive.entries().expect("layer entries") {
        let mut entry = entry.expect("layer entry");
        let name = entry.path().expect("path").display().to_string();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let base = name.rsplit('/').next().unwrap_or_default();
        assert!(!base.starts_with(".wh."), "{name}: unexpected whiteout");
        let header = entry.header().clone();
        let mode = header.mode().expect("mode");
        let node = match header.entry_type() {
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read file");
                Node::File { data, mode }
            }
            tar::EntryType::Directory => Node::Dir {
                mode,
                uid: header.uid().expect("uid"),
            },
            tar::EntryType::Symlink => Node::Symlink(
                header
                    .link_name()
                    .expect("link")
                    .expect("link name")
                    .display()
                    .to_string(),
            ),
            other => panic!("{name}: unexpected tar entry type {other:?}"),
        };
        fs.insert(name, node);
    }
}

/// The parts of an ELF64 little-endian file the dynamic loader reads: PT_INTERP and DT_NEEDED.
struct Elf {
    interpreter: Option<String>,
    needed: Vec<String>,
}

fn read_elf(path: &str, data: &[u8]) -> Elf {
    assert!(data.starts_with(b"\x7fELF"), "{path}: not an ELF file");
    assert_eq!(
        (data[4], data[5]),
        (2, 1),
        "{path}: not ELF64 little-endian"
    );
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().expect("u16"));
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().expect("u32"));
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().expect("u64"));
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36) as usize;
    let phnum = u16_at(0x38) as usize;
    let mut loads = Vec::new();
    let mut dynamic = None;
    let mut interpreter = None;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (kind, offset, vaddr, filesz) =
            (u32_at(ph), u64_at(ph + 8), u64_at(ph + 16), u64_at(ph + 32));
        match kind {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset as usize, filesz as usize)),
            3 => {
                let raw = &data[offset as usize..(offset + filesz) as usize];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                interpreter = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
            _ => {}
        }
    }
    let mut needed_offsets = Vec::new();
    let mut strtab = None;
    if let Some((offset, size)) = dynamic {
        for entry in (offset..offset + size).step_by(16) {
            match u64_at(entry) {
                0 => break,
                1 => needed_offsets.push(u64_at(entry + 8)),
                5 => strtab = Some(u64_at(entry + 8)),
                _ => {}
            }
        }
    }
    let mut needed = Vec::new();
    if !needed_offsets.is_empty() {
        let strtab = strtab.unwrap_or_else(|| panic!("{path}: DT_NEEDED without DT_STRTAB"));
        let file_offset = loads
            .iter()
            .find(|(vaddr, _, filesz)| (*vaddr..vaddr + filesz).contains(&strtab))
            .map(|(vaddr, offset, _)| (strtab - vaddr + offset) as usize)
            .unwrap_or_else(|| panic!("{path}: DT_STRTAB outside every PT_LOAD"));
        for name in needed_offsets {
            let start = file_offset + name as usize;
            let end = start + data[start..].iter().position(|&b| b == 0).expect("NUL");
            needed.push(String::from_utf8_lossy(&data[start..end]).into_owned());
        }
    }
    Elf {
        interpreter,
        needed,
    }
}

/// Where glibc's loader looks for a library when there is no ld.so.cache.
const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Every shared object the loader maps for `path`, transitively; panics on a missing one.
fn check_needed(image: &Image, path: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![path.to_string()];
    let elf = read_elf(path, image.file(path));
    let interpreter = elf
        .interpreter
        .unwrap_or_else(|| panic!("{path}: no PT_INTERP (a static binary needs no check)"));
    let (resolved, _) = image
        .resolve(&interpreter)
        .unwrap_or_else(|| panic!("{path}: its loader {interpreter} is not in the image"));
    read_elf(&resolved, image.file(&resolved));
    seen.insert(resolved);
    while let Some(object) = todo.pop() {
        for soname in read_elf(&object, image.file(&object)).needed {
            let found = LIBRARY_DIRS
                .iter()
                .find_map(|dir| image.resolve(&format!("{dir}/{soname}")))
                .unwrap_or_else(|| {
                    panic!("{object} needs {soname}, which is in no library folder of the image")
                });
            if seen.insert(found.0.clone()) {
                todo.push(found.0);
            }
        }
    }
    seen
}

/// Names that must not be in an image without a shell or a package manager, anywhere.
const FORBIDDEN: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "csh", "busybox", "toybox", "apt", "apt-get",
    "dpkg", "dpkg-deb", "rpm", "yum", "dnf", "apk", "pip", "python3", "perl",
];

#[test]
fn lockstep_image_has_the_promised_shape() {
    let archive = lockstep_archive();
    let image = Image::read(&archive);
    let version = env!("CARGO_PKG_VERSION");

    // Named for containerd (`ctr images import`) and OCI tools.
    assert_eq!(
        image.annotation("io.containerd.image.name"),
        format!("{LOCKSTEP_REF}:{version}")
    );
    assert_eq!(
        image.annotation("org.opencontainers.image.ref.name"),
        version
    );

    // Runs as nonroot, with the binary as entrypoint.
    let runtime = image.runtime();
    assert_eq!(runtime["User"], UID_GID);
    assert_eq!(runtime["Entrypoint"], serde_json::json!(["/lockstep"]));
    assert_eq!(runtime["Cmd"], serde_json::json!(["run"]));
    let env: Vec<&str> = runtime["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));

    // OCI labels.
    for label in ["title", "description", "source", "created"] {
        assert!(
            !image
                .label(&format!("org.opencontainers.image.{label}"))
                .is_empty()
        );
    }
    assert_eq!(image.label("org.opencontainers.image.version"), version);
    assert_eq!(
        image.label("org.opencontainers.image.licenses"),
        "Apache-2.0"
    );
    assert_eq!(
        image.label("org.opencontainers.image.created"),
        image.config["created"].as_str().expect("created")
    );
    let revision = image.label("org.opencontainers.image.revision");
    let commit = revision.strip_suffix("-dirty").unwrap_or(revision);
    assert!(
        commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "revision label {revision:?} is not a git commit"
    );

    // The binary, and every library it needs, transitively.
    match image.fs.get("lockstep") {
        Some(Node::File { mode, .. }) => assert_eq!(mode & 0o777, 0o755),
        other => panic!("/lockstep is not a file: {other:?}"),
    }
    let libraries = check_needed(&image, "/lockstep");
    assert!(
        libraries.iter().any(|l| l.ends_with("/libc.so.6")),
        "{libraries:?}"
    );

    // No shell, no package manager: nothing executable but the binary and its libraries, and
    // no program folder at all.
    for (path, node) in &image.fs {
        let base = path.rsplit('/').next().unwrap_or_default();
        // A folder may bear such a name (/var/lib/dpkg holds the scanners' records); a file or
        // a link may not.
        assert!(
            matches!(node, Node::Dir { .. }) || !FORBIDDEN.contains(&base),
            "/{path} is in the image (a shell or package manager)"
        );
        for dir in ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin"] {
            assert!(
                !path.starts_with(&format!("{dir}/")),
                "/{path}: the image has a program folder"
            );
        }
        if let Node::File { mode, .. } = node
            && mode & 0o111 != 0
        {
            let absolute = format!("/{path}");
            assert!(
                absolute == "/lockstep" || libraries.contains(&absolute),
                "{absolute} is executable but is neither the binary nor a library it needs"
            );
        }
    }

    // Users, temporary folder, CA certificates.
    let passwd = String::from_utf8_lossy(image.file("/etc/passwd")).into_owned();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "{passwd}"
    );
    let group = String::from_utf8_lossy(image.file("/etc/group")).into_owned();
    assert!(group.lines().any(|l| l == "nonroot:x:65532:"), "{group}");
    match image.fs.get("tmp") {
        Some(Node::Dir { mode, .. }) => assert_eq!(mode & 0o7777, 0o1777, "/tmp mode"),
        other => panic!("/tmp is not a directory: {other:?}"),
    }
    match image.fs.get("home/nonroot") {
        Some(Node::Dir { uid, .. }) => assert_eq!(*uid, 65532, "/home/nonroot owner"),
        other => panic!("/home/nonroot is not a directory: {other:?}"),
    }
    let bundle = String::from_utf8_lossy(image.file("/etc/ssl/certs/ca-certificates.crt"))
        .matches("-----BEGIN CERTIFICATE-----")
        .count();
    assert!(
        bundle >= 100,
        "the CA bundle holds {bundle} certificates, not Debian's"
    );

    let size = image.compressed_size();
    eprintln!(
        "{}: {} layers, {size} bytes compressed ({:.2} MB)",
        archive.display(),
        image.layer_sizes.len(),
        size as f64 / 1e6
    );
    assert!(
        size <= MAX_COMPRESSED_BYTES,
        "the image is {size} bytes compressed, over {MAX_COMPRESSED_BYTES}"
    );
    assert!(
        image.manifest["layers"].as_array().expect("layers").len() >= 2,
        "the Debian files and the binary are separate layers"
    );
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SSZ`.
fn epoch_of(timestamp: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 {
        timestamp[range].parse().expect("timestamp digits")
    };
    assert_eq!(timestamp.len(), 20, "{timestamp}: not YYYY-MM-DDTHH:MM:SSZ");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 to y-m-d (proleptic Gregorian calendar).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[test]
fn lockstep_image_rebuilds_to_the_same_layers() {
    let archive = lockstep_archive();
    let image = Image::read(&archive);
    let dir = std::env::temp_dir().join(unique_name("lockstep-image-rebuild"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let binary = dir.join("lockstep");
    std::fs::write(&binary, image.file("/lockstep")).expect("write binary");
    let epoch = epoch_of(image.config["created"].as_str().expect("created"));
    let mut rebuilt = Vec::new();
    for round in ["a", "b"] {
        let out = dir.join(round).join("lockstep.oci.tar");
        let result = Command::new("python3")
            .arg(repo_root().join("deploy/image/build.py"))
            .args(["lockstep", "--binary"])
            .arg(&binary)
            .arg("--out")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("run deploy/image/build.py");
        assert!(
            result.status.success(),
            "build.py lockstep failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        rebuilt.push(out);
    }
    let (a, b) = (
        std::fs::read(&rebuilt[0]).expect("a"),
        std::fs::read(&rebuilt[1]).expect("b"),
    );
    assert!(a == b, "two builds from the same inputs differ");
    let again = Image::read(&rebuilt[0]);
    assert_eq!(
        again.layer_digests,
        image.layer_digests,
        "the image rebuilt from its own binary at the same SOURCE_DATE_EPOCH has other layers: \
         the build is not reproducible, or the Debian packages changed since {} was built",
        archive.display()
    );
    // Only the revision label may differ (the archive may be from an earlier commit).
    let without_revision = |config: &Value| {
        let mut config = config.clone();
        config["config"]["Labels"]
            .as_object_mut()
            .expect("labels")
            .remove("org.opencontainers.image.revision");
        config
    };
    assert_eq!(
        without_revision(&again.config),
        without_revision(&image.config)
    );
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn pause_and_app_images_have_their_shape() {
    let pause = Image::read(&sibling_archive("pause.oci.tar"));
    assert_eq!(
        pause.annotation("io.containerd.image.name"),
        "lockstep.invalid/pause:3.10"
    );
    assert_eq!(pause.runtime()["User"], "65535:65535");
    assert_eq!(pause.runtime()["Entrypoint"], serde_json::json!(["/pause"]));
    let elf = read_elf("/pause", pause.file("/pause"));
    assert!(
        elf.interpreter.is_none() && elf.needed.is_empty(),
        "/pause is static"
    );
    let files: Vec<&String> = pause.fs.keys().collect();
    assert_eq!(files, ["pause"], "the pause image holds only /pause");

    let app = Image::read(&sibling_archive("app.oci.tar"));
    assert_eq!(
        app.annotation("io.containerd.image.name"),
        "lockstep.invalid/app:1"
    );
    assert_eq!(app.runtime()["User"], UID_GID);
    let busybox = read_elf("/bin/busybox", app.file("/bin/busybox"));
    assert!(
        busybox.interpreter.is_none() && busybox.needed.is_empty(),
        "busybox is static"
    );
    for applet in ["sh", "echo", "cat", "env", "sleep"] {
        let (resolved, _) = app
            .resolve(&format!("/bin/{applet}"))
            .unwrap_or_else(|| panic!("/bin/{applet} is missing"));
        assert_eq!(resolved, "/bin/busybox");
    }
}

#[test]
fn oci_writer_unit_tests_pass() {
    let dir = repo_root().join("deploy/image");
    let result = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&dir)
        .arg("-t")
        .arg(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 -m unittest");
    let output = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "oci.py unit tests failed:\n{output}"
    );
    let ran: usize = output
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no unittest summary:\n{output}"));
    assert!(ran >= 7, "only {ran} oci.py unit tests ran:\n{output}");
}
