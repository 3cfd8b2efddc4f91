"""Unit tests of oci.py: the same description gives the same bytes, whatever the order or the
clock, and the layout is what OCI tools read. Run: python3 -m unittest discover -s deploy/image"""

import gzip
import io
import json
import os
import tarfile
import tempfile
import time
import unittest
from pathlib import Path

import oci


def entries():
    return [
        oci.file("/etc/passwd", data=b"root:x:0:0::/:/sbin/nologin\n"),
        oci.file("/app/bin/tool", data=b"\x7fELF...", mode=0o755),
        oci.symlink("/bin/tool", "../app/bin/tool"),
        oci.directory("/home/nonroot", mode=0o700, uid=65532, gid=65532),
    ]


CONFIG = oci.Config(user="65532:65532", entrypoint=["/app/bin/tool"], cmd=["run"],
                    env=["A=1"], labels={"org.opencontainers.image.version": "1"})


class Determinism(unittest.TestCase):
    def build(self, layer_entries, epoch=1_700_000_000):
        return oci.build([oci.Layer(tuple(layer_entries), "test")], CONFIG,
                         "example.invalid/test:1", epoch=epoch)

    def test_same_input_same_digest_in_any_order_and_at_any_time(self):
        first = self.build(entries())
        time.sleep(1.1)
        second = self.build(list(reversed(entries())))
        self.assertEqual(first.manifest_digest, second.manifest_digest)
        self.assertEqual(first.blobs, second.blobs)
        self.assertEqual(first.index, second.index)

    def test_the_epoch_and_the_content_change_the_digest(self):
        base = self.build(entries())
        self.assertNotEqual(base.manifest_digest,
                            self.build(entries(), epoch=1_700_000_001).manifest_digest)
        changed = entries()
        changed[0] = oci.file("/etc/passwd", data=b"other\n")
        self.assertNotEqual(base.manifest_digest, self.build(changed).manifest_digest)

    def test_archives_are_byte_identical(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = Path(tmp, "a.tar"), Path(tmp, "b.tar")
            oci.write_archive(self.build(entries()), a, epoch=5)
            os.utime(tmp, (0, 0))
            oci.write_archive(self.build(entries()), b, epoch=5)
            self.assertEqual(a.read_bytes(), b.read_bytes())

    def test_layer_entries_are_sorted_with_parents_and_fixed_metadata(self):
        built = self.build(entries())
        layer = built.blobs[built.layer_digests[0]]
        self.assertEqual(layer[4:8], b"\x00\x00\x00\x00", "gzip mtime is zero")
        raw = gzip.decompress(layer)
        self.assertEqual(oci.sha256_digest(raw), built.diff_ids[0])
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        self.assertEqual(names, ["app", "app/bin", "app/bin/tool", "bin", "bin/tool", "etc",
                                 "etc/passwd", "home", "home/nonroot"])
        for m in members:
            self.assertEqual(m.mtime, 1_700_000_000, m.name)
            self.assertEqual((m.uname, m.gname), ("", ""), m.name)
        by_name = {m.name: m for m in members}
        self.assertEqual((by_name["home/nonroot"].uid, by_name["home/nonroot"].mode),
                         (65532, 0o700))
        self.assertTrue(by_name["bin/tool"].issym())
        self.assertEqual(by_name["app/bin/tool"].mode, 0o755)


class Layout(unittest.TestCase):
    def test_index_names_the_image_for_containerd_and_oci_tools(self):
        built = oci.build([oci.Layer(tuple(entries()))], CONFIG, "example.invalid/a/b:1.2",
                          epoch=0)
        index = json.loads(built.index)
        annotations = index["manifests"][0]["annotations"]
        self.assertEqual(annotations[oci.ANNOTATION_REF_NAME], "1.2")
        self.assertEqual(annotations[oci.ANNOTATION_CONTAINERD_NAME], "example.invalid/a/b:1.2")
        manifest = json.loads(built.blobs[built.manifest_digest])
        config = json.loads(built.blobs[manifest["config"]["digest"]])
        self.assertEqual(config["config"]["User"], "65532:65532")
        self.assertEqual(config["created"], "1970-01-01T00:00:00Z")
        self.assertEqual(config["rootfs"]["diff_ids"], list(built.diff_ids))
        for digest, blob in built.blobs.items():
            self.assertEqual(oci.sha256_digest(blob), digest)
        self.assertEqual(built.blobs[built.manifest_digest], oci.canonical_json(manifest))

    def test_archive_round_trips_through_extract(self):
        built = oci.build([oci.Layer(tuple(entries()))], CONFIG, "example.invalid/t:1", epoch=0)
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp, "t.tar")
            oci.write_archive(built, archive, epoch=0)
            files = oci.read_archive(archive)
            self.assertEqual(set(files), {"oci-layout", "index.json"} | {
                "blobs/" + d.replace(":", "/") for d in built.blobs})
            config = oci.extract_rootfs(archive, Path(tmp, "rootfs"))
            self.assertEqual(config["config"]["Entrypoint"], ["/app/bin/tool"])
            self.assertEqual(Path(tmp, "rootfs/etc/passwd").read_bytes(),
                             b"root:x:0:0::/:/sbin/nologin\n")
            self.assertEqual(os.readlink(Path(tmp, "rootfs/bin/tool")), "../app/bin/tool")

    def test_invalid_descriptions_are_refused(self):
        for bad in ([oci.file("relative", data=b"")],
                    [oci.file("/a/../../etc", data=b"")],
                    [oci.file("/a", data=b""), oci.file("/a", data=b"")],
                    [oci.file("/a", data=b""), oci.file("/a/b", data=b"")]):
            with self.assertRaises(ValueError):
                oci.layer_tar(bad, 0)
        with self.assertRaises(ValueError):
            oci.split_ref("example.invalid/untagged")


if __name__ == "__main__":
    unittest.main()
