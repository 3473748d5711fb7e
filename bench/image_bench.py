"""Image store benchmark: unpacking the busybox layer, snapshots, and pulls from a
loopback registry, with reference tools side by side where the host has them.

    sudo .venv/bin/python bench/image_bench.py [--runs N] [--rootfs DIR]

Timed (wall clock, medians of --runs, after one untimed warm-up):

  unpack           pyruntime.image.unpack.unpack_layer of the busybox layer (tar+gzip)
                   into a fresh directory (overlay form as root)   | reference: tar -xzf
  snapshot         ImageStore.create_snapshot + remove_snapshot (overlay mount/umount)
  cold pull        ImageStore.pull into an empty store             | reference: skopeo copy
  warm pull        ImageStore.pull, policy Always, image already stored (manifest only)
  warm pull (CLI)  `pyruntime image pull` through image_main in a fresh interpreter
                                                                   | reference: skopeo copy
                                                                     to an OCI layout that
                                                                     has the blobs

The registry is Debian's docker-registry on 127.0.0.1:<free port> with its storage in a
temporary directory, stopped at the end; the image is pushed to it by the store itself.
The busybox rootfs is --rootfs, else $PYRUNTIME_BUNDLE/rootfs, else built with
rootfs-tools/build-busybox-rootfs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pyruntime.image import ImageStore  # noqa: E402
from pyruntime.image.layout import write_layer_blob, write_oci_layout  # noqa: E402
from pyruntime.image.unpack import unpack_layer  # noqa: E402

PYTHON = os.path.join(REPO, ".venv", "bin", "python")
CLI = ("import sys; from pyruntime.cli.image_cli import image_main; "
       "sys.exit(image_main(sys.argv[1:]))")


def timed(fn, runs: int, setup=None) -> list[float]:
    """ms per run of `fn` (after one untimed warm-up); `setup` runs untimed before each."""
    out = []
    for i in range(runs + 1):
        if setup:
            setup()
        start = time.perf_counter_ns()
        fn()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if i:
            out.append(elapsed)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(directory: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {directory}/data\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).close()
            return proc, f"127.0.0.1:{port}"
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("docker-registry did not start")
            time.sleep(0.05)


def find_rootfs(given: str | None, tmp: str) -> str:
    if given:
        return given
    bundle = os.environ.get("PYRUNTIME_BUNDLE", "/var/lib/pyruntime/bundles/busybox")
    if os.path.isfile(os.path.join(bundle, "rootfs", "bin", "busybox")):
        return os.path.join(bundle, "rootfs")
    path = os.path.join(tmp, "rootfs")
    subprocess.run([os.path.join(REPO, "rootfs-tools", "build-busybox-rootfs"), path], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rootfs")
    args = parser.parse_args()
    rows: list[tuple[str, list[float] | None, str, list[float] | None]] = []
    tmp = tempfile.mkdtemp(prefix="pyrt-image-bench-")
    registry = None
    store = None
    try:
        rootfs = find_rootfs(args.rootfs, tmp)
        layer = os.path.join(tmp, "layer.tar.gz")
        with open(layer, "wb") as f:
            _, size, diff_id = write_layer_blob(rootfs, f, mtime=0, owner=None)
        overlay = os.geteuid() == 0
        counter = iter(range(1_000_000))
        target = {}

        def fresh_dir():
            path = os.path.join(tmp, f"unpack{next(counter)}")
            os.mkdir(path)
            target["dir"] = path

        def ours():
            with open(layer, "rb") as f:
                unpack_layer(f, target["dir"], overlay=overlay, diff_id=diff_id)

        def tar():
            subprocess.run(["tar", "-xzf", layer, "-C", target["dir"]], check=True)

        rows.append((f"unpack busybox layer ({size // 1000} kB gz)", timed(ours, args.runs, fresh_dir),
                     "tar -xzf", timed(tar, args.runs, fresh_dir)))

        layout = os.path.join(tmp, "layout")
        write_oci_layout(rootfs, layout, {"Cmd": ["/bin/sh"]}, "bench/busybox:1", mtime=0)
        store = ImageStore(os.path.join(tmp, "store"))
        store.import_path(layout)
        if overlay:
            ids = iter(range(1_000_000))

            def snapshot():
                sid = f"bench{next(ids)}"
                store.create_snapshot("bench/busybox:1", sid)
                store.remove_snapshot(sid)

            rows.append(("snapshot create + remove (overlay)", timed(snapshot, args.runs), "", None))

        if shutil.which("docker-registry") is None:
            print("docker-registry is not installed: pulls not measured", file=sys.stderr)
        else:
            registry, host = start_registry(os.path.join(tmp, "registry"))
            ref = f"{host}/bench/busybox:1"
            store.push("bench/busybox:1", ref)
            skopeo = shutil.which("skopeo")
            cold_dirs = iter(range(1_000_000))
            cold = {}

            def cold_setup():
                cold["root"] = os.path.join(tmp, f"cold{next(cold_dirs)}")

            def cold_pull():
                ImageStore(cold["root"]).pull(ref, policy="Always")

            def skopeo_cold():
                subprocess.run([skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{cold['root']}:1"], check=True, stdout=subprocess.DEVNULL)

            rows.append(("cold pull", timed(cold_pull, args.runs, cold_setup),
                         "skopeo copy (cold)" if skopeo else "",
                         timed(skopeo_cold, args.runs, cold_setup) if skopeo else None))
            warm = ImageStore(os.path.join(tmp, "warm"))
            warm.pull(ref)
            warm_oci = os.path.join(tmp, "warm-oci")
            if skopeo:
                subprocess.run([skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{warm_oci}:1"], check=True, stdout=subprocess.DEVNULL)

            def cli_pull():
                subprocess.run([PYTHON, "-c", CLI, "--store", warm.root, "pull", "-q", ref],
                               check=True, stdout=subprocess.DEVNULL)

            def skopeo_warm():
                subprocess.run([skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                                f"oci:{warm_oci}:1"], check=True, stdout=subprocess.DEVNULL)

            rows.append(("warm pull (API, policy Always)",
                         timed(lambda: warm.pull(ref, policy="Always"), args.runs), "", None))
            rows.append(("warm pull (CLI, new interpreter)", timed(cli_pull, args.runs),
                         "skopeo copy (warm)" if skopeo else "",
                         timed(skopeo_warm, args.runs) if skopeo else None))
    finally:
        if registry is not None:
            registry.terminate()
            registry.wait(timeout=10)
        if store is not None:
            for snap in store.snapshots():
                store.remove_snapshot(snap["id"])
        subprocess.run(["rm", "-rf", "--one-file-system", tmp])

    print(f"image store benchmark: medians of {args.runs} runs, ms")
    print(f"{'operation':40} {'pyruntime':>10}   {'reference':24} {'ms':>8} {'ratio':>7}")
    for name, ours_ms, ref_name, ref_ms in rows:
        mine = statistics.median(ours_ms) if ours_ms else float("nan")
        line = f"{name:40} {mine:10.1f}"
        if ref_ms:
            theirs = statistics.median(ref_ms)
            line += f"   {ref_name:24} {theirs:8.1f} {mine / theirs:7.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
