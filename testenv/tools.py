#!/usr/bin/env python3
"""Developer tools Lockstep's tests and scripts need, built from pinned Go modules.

Each tool is built once from its module under testenv/go/<tool>/ (go.mod and go.sum pin every
dependency) into ~/.cache/lockstep/tools/<tool>-<version>/, outside the repository, and then
reused. A build is published atomically: an interrupted build is never picked up.

Commands:
  helm     print the path of the helm binary, building it first if needed

Only the Python standard library and Go are used; modules come through the Go module proxy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
GO_HELM = ROOT / "go" / "helm"
HELM_MODULE = "helm.sh/helm/v4"

CACHE = Path(os.environ.get(
    "LOCKSTEP_CACHE",
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lockstep",
))
TOOLS_CACHE = CACHE / "tools"


def say(msg: str) -> None:
    print(f"[tools] {msg}", file=sys.stderr, flush=True)


class ToolError(RuntimeError):
    """A tool could not be built."""


def go_mod_version(mod: Path, module: str) -> str:
    """The version `mod` (a go.mod file) requires of `module`."""
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", mod.read_text(), re.M)
    if not m:
        raise ToolError(f"{mod} does not require {module}")
    return m.group(1)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Build with the Go on this machine; never fetch another toolchain.
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=readonly"
    return env


def helm_version() -> str:
    """The helm version pinned in testenv/go/helm/go.mod."""
    return go_mod_version(GO_HELM / "go.mod", HELM_MODULE)


def helm_path() -> Path:
    """Where the pinned helm lives in the cache (whether or not it is built yet)."""
    return TOOLS_CACHE / f"helm-{helm_version()}" / "helm"


def ensure_helm() -> Path:
    """The path of the pinned helm binary, built from its Go module first if it is missing."""
    target = helm_path()
    if target.is_file():
        return target
    if shutil.which("go") is None:
        raise ToolError("Go is not installed: helm is built from its Go module (testenv/go/helm)")
    version = helm_version()
    TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"helm-{version}.partial-", dir=TOOLS_CACHE))
    staging.chmod(0o755)
    try:
        env = go_env()
        say(f"helm {version}: downloading Go modules (through the Go module proxy)")
        subprocess.run(["go", "mod", "download"], cwd=GO_HELM, env=env, check=True)
        ldflags = " ".join([
            "-s", "-w",
            f"-X {HELM_MODULE}/internal/version.version={version}",
            f"-X {HELM_MODULE}/internal/version.gitTreeState=clean",
        ])
        say(f"helm {version}: compiling (a few minutes on 2 cores the first time)")
        start = time.monotonic()
        proc = subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(staging / "helm"),
             f"{HELM_MODULE}/cmd/helm"],
            cwd=GO_HELM, env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr[-6000:], file=sys.stderr)
            raise ToolError(f"helm {version}: go build failed")
        say(f"helm {version}: built in {int(time.monotonic() - start)}s")
        # Publish atomically, so an interrupted build is never reused; a concurrent builder
        # that published first wins.
        try:
            staging.rename(target.parent)
        except OSError:
            if not target.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("helm", help="print the path of helm, building it first if needed")
    args = parser.parse_args()
    try:
        if args.command == "helm":
            print(ensure_helm())
    except (ToolError, subprocess.CalledProcessError) as e:
        say(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
