"""Start-up benchmark: pyruntime side by side with runc and crun, on one busybox bundle.

    .venv/bin/python bench/startup.py [--runs N] [--warmup N] [--bundle DIR]

Measures, per runtime, the wall time of the commands a container engine runs:

  run         RUNTIME --root R run --bundle B ID                 (args ["/bin/true"])
  lifecycle   RUNTIME --root R create --bundle B ID; start ID; delete --force ID
  exec        RUNTIME --root R exec ID /bin/true     (in a container started with run -d)
  idle-run    run, after 100 ms in which no runtime ran: an engine starting a container
              now and then rather than in a tight loop. Linux makes the first write to
              a cgroup.procs after a quiet spell wait for an RCU grace period, which a
              loop of back-to-back runs keeps from happening (pyruntime starts that wait
              early, see pyruntime/cgroups/attach_warmup.py; runc waits for it in line).

Runs alternate between runtimes (A, B, C, A, B, C, ...) so that drift in the machine's
load affects all of them alike; each operation gets --warmup untimed runs per runtime,
then --runs timed ones, and the table shows medians and the ratio of pyruntime to each
reference runtime. A runtime that fails an operation is reported as failed, not timed.

The whole benchmark runs in a private mount namespace in which /sys/fs/cgroup/unified is
unmounted: crun refuses the hybrid cgroup v1/v2 layout of the development hosts otherwise,
and running every runtime in the same namespace keeps the comparison fair.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUNDLE = os.environ.get("PYRUNTIME_BUNDLE", "/var/lib/pyruntime/bundles/busybox")
NS_MARKER = "PYRUNTIME_BENCH_IN_NAMESPACE"
CGROUP_UNIFIED = "/sys/fs/cgroup/unified"
OPERATIONS = ("run", "lifecycle", "exec", "idle-run")
IDLE_SECONDS = 0.1


class Failed(Exception):
    """A runtime command exited non-zero; the message is the gist of its stderr."""


class Runtime:
    """One runtime binary with its own private state root."""

    def __init__(self, name: str, path: str, root: str, scratch: str):
        self.name = name
        self.path = path
        self.root = root
        self.errfile = open(os.path.join(scratch, f"{name}.stderr"), "w+b")
        self.live: set[str] = set()   # container ids that may exist and need deleting
        self.failure: dict[str, str] = {}   # operation -> first failure

    def cmd(self, *args: str) -> list[str]:
        return [self.path, "--root", self.root, *args]

    def call(self, *args: str) -> int:
        """Run one command; return its wall time in ns, or raise Failed."""
        self.errfile.seek(0)
        self.errfile.truncate()
        argv = self.cmd(*args)
        # stderr goes to a file, not a pipe: a detached container inherits it and would
        # hold a pipe open, making us wait for EOF.
        t0 = time.perf_counter_ns()
        rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=self.errfile).returncode
        elapsed = time.perf_counter_ns() - t0
        if rc != 0:
            raise Failed(self._gist(rc))
        return elapsed

    def _gist(self, rc: int) -> str:
        self.errfile.seek(0)
        lines = [ln.strip() for ln in self.errfile.read().decode(errors="replace").splitlines()
                 if ln.strip()]
        if not lines:
            return f"exit status {rc}, no stderr"
        # A Python traceback's first line says nothing; its last line says what failed.
        return lines[-1] if lines[0].startswith("Traceback") else lines[0]

    def delete(self, cid: str) -> bool:
        rc = subprocess.run(self.cmd("delete", "--force", cid), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if rc == 0 or not os.path.exists(os.path.join(self.root, cid)):
            self.live.discard(cid)
            return True
        return False

    def version(self) -> str:
        try:
            out = subprocess.run([self.path, "--version"], capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"? ({e})"
        line = (out.stdout or out.stderr).strip().splitlines()
        return line[0] if out.returncode == 0 and line else "? (--version failed)"


# --- operations: each returns ns for one timed unit, or raises Failed -----------------------

def op_run(rt: Runtime, bundles: dict[str, str], cid: str, exec_ids: dict[str, str]) -> int:
    rt.live.add(cid)
    try:
        return rt.call("run", "--bundle", bundles["true"], cid)
    finally:
        # `run` deletes the container when it exits; whatever it left, we delete.
        if os.path.exists(os.path.join(rt.root, cid)):
            rt.delete(cid)
        else:
            rt.live.discard(cid)


def op_lifecycle(rt: Runtime, bundles: dict[str, str], cid: str, exec_ids: dict[str, str]) -> int:
    rt.live.add(cid)
    try:
        t = rt.call("create", "--bundle", bundles["true"], cid)
        t += rt.call("start", cid)
        t += rt.call("delete", "--force", cid)
        rt.live.discard(cid)
        return t
    finally:
        if cid in rt.live:
            rt.delete(cid)


def op_exec(rt: Runtime, bundles: dict[str, str], cid: str, exec_ids: dict[str, str]) -> int:
    target = exec_ids.get(rt.name)
    if target is None:
        raise Failed(rt.failure.get("exec-setup", "no long-running container"))
    return rt.call("exec", target, "/bin/true")


def op_idle_run(rt: Runtime, bundles: dict[str, str], cid: str, exec_ids: dict[str, str]) -> int:
    time.sleep(IDLE_SECONDS)  # untimed
    return op_run(rt, bundles, cid, exec_ids)


OPS = {"run": op_run, "lifecycle": op_lifecycle, "exec": op_exec, "idle-run": op_idle_run}


def become_subreaper() -> None:
    """Adopt the containers' processes, as an engine's shim does, so that we reap them."""
    import ctypes
    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"bench: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)


def reap() -> None:
    """Collect exited adopted processes (never while a subprocess.run is in flight)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# --- set-up ------------------------------------------------------------------------------

def enter_namespace(argv: list[str]) -> None:
    """Re-execute this script in a private mount namespace, once."""
    if os.environ.get(NS_MARKER) == "1":
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("bench: unshare (util-linux) not found; use --no-namespace")
    env = dict(os.environ, **{NS_MARKER: "1"})
    os.execve(unshare, [unshare, "-m", "--propagation", "private",
                        sys.executable, os.path.abspath(__file__), *argv], env)


def hide_unified_cgroup() -> str:
    if os.environ.get(NS_MARKER) != "1":
        return "host mount namespace (--no-namespace)"
    if os.path.ismount(CGROUP_UNIFIED):
        subprocess.run(["umount", CGROUP_UNIFIED], check=True)
        return f"private mount namespace, {CGROUP_UNIFIED} unmounted (hybrid cgroups)"
    return "private mount namespace"


def cgroup_mode() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2 (unified)"
    if os.path.ismount(CGROUP_UNIFIED):
        return "v1 hybrid (v2 at /sys/fs/cgroup/unified)"
    return "v1"


def prepare_bundles(src: str, scratch: str) -> dict[str, str]:
    """Two bundles sharing SRC's rootfs: /bin/true and /bin/sleep 3600, no terminal."""
    with open(os.path.join(src, "config.json")) as f:
        spec = json.load(f)
    rootfs = spec["root"]["path"]
    if not os.path.isabs(rootfs):
        spec["root"]["path"] = os.path.join(src, rootfs)
    spec["process"]["terminal"] = False
    bundles = {}
    for name, args in (("true", ["/bin/true"]), ("sleep", ["/bin/sleep", "3600"])):
        spec["process"]["args"] = args
        d = os.path.join(scratch, f"bundle-{name}")
        os.mkdir(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(spec, f, indent=2)
        bundles[name] = d
    return bundles


def find_runtimes(args, scratch: str) -> list[Runtime]:
    candidates = [("pyruntime", args.pyruntime), ("runc", args.runc), ("crun", args.crun)]
    runtimes = []
    for name, path in candidates:
        if not path:
            continue
        found = shutil.which(path) or (path if os.access(path, os.X_OK) else None)
        if found is None:
            print(f"bench: {name}: {path} not found, skipped", file=sys.stderr)
            continue
        root = os.path.join(scratch, f"root-{name}")
        os.mkdir(root, 0o700)
        runtimes.append(Runtime(name, found, root, scratch))
    return runtimes


# --- the benchmark ----------------------------------------------------------------------

def measure(runtimes: list[Runtime], bundles: dict[str, str], runs: int, warmup: int,
            exec_ids: dict[str, str]) -> dict[str, dict[str, list[int]]]:
    times: dict[str, dict[str, list[int]]] = {op: {rt.name: [] for rt in runtimes}
                                              for op in OPERATIONS}
    pid = os.getpid()
    for op in OPERATIONS:
        print(f"bench: {op}: {warmup} warm-up + {runs} timed runs per runtime", file=sys.stderr)
        for i in range(warmup + runs):
            for rt in runtimes:   # alternate: A, B, C, A, B, C, ...
                if op in rt.failure:
                    continue
                cid = f"bench-{pid}-{op}-{i}"
                try:
                    t = OPS[op](rt, bundles, cid, exec_ids)
                except Failed as e:
                    rt.failure[op] = str(e)
                    continue
                finally:
                    reap()
                if i >= warmup:
                    times[op][rt.name].append(t)
    return times


def start_exec_targets(runtimes: list[Runtime], bundles: dict[str, str]) -> dict[str, str]:
    ids = {}
    for rt in runtimes:
        cid = f"bench-{os.getpid()}-exec-target"
        rt.live.add(cid)
        try:
            rt.call("run", "-d", "--bundle", bundles["sleep"], cid)
            ids[rt.name] = cid
        except Failed as e:
            rt.failure["exec-setup"] = f"run -d: {e}"
            rt.delete(cid)
    return ids


def report(runtimes: list[Runtime], times, args, where: str) -> None:
    names = [rt.name for rt in runtimes]
    refs = [n for n in ("runc", "crun") if n in names and "pyruntime" in names]
    by_name = {rt.name: rt for rt in runtimes}

    print()
    print(f"host: {platform.node()}, kernel {platform.release()}, {os.cpu_count()} CPUs, "
          f"cgroups {args.cgroups}")
    print(f"ran in: {where}")
    print(f"bundle: {args.bundle} (busybox, /bin/true, terminal=false)")
    print(f"runs: {args.runs} timed per runtime and operation after {args.warmup} warm-up, "
          "alternating runtimes; median wall time in ms")
    for rt in runtimes:
        print(f"  {rt.name}: {rt.path} ({rt.version()})")
    print()

    header = ["operation"] + names + [f"pyruntime/{r}" for r in refs]
    rows = [header]
    notes = []
    for op in OPERATIONS:
        row = [op]
        med = {}
        for n in names:
            rt = by_name[n]
            if op in rt.failure:
                row.append("failed")
                notes.append(f"{n} {op} failed: {rt.failure[op]}")
            elif times[op][n]:
                med[n] = statistics.median(times[op][n]) / 1e6
                row.append(f"{med[n]:.1f}")
            else:
                row.append("-")
        for r in refs:
            row.append(f"{med['pyruntime'] / med[r]:.2f}x"
                       if "pyruntime" in med and r in med else "-")
        rows.append(row)

    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(f"  {note}")
    print("\nlifecycle = create + start + delete --force timed as one unit; "
          "exec = exec /bin/true into a running container;\n"
          f"idle-run = run after {IDLE_SECONDS * 1000:.0f} ms in which no runtime ran.")


def cleanup(runtimes: list[Runtime], scratch: str) -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        keep = False
        for rt in runtimes:
            for cid in sorted(rt.live):
                if not rt.delete(cid):
                    print(f"bench: could not delete {rt.name} container {cid} "
                          f"(state kept in {rt.root})", file=sys.stderr)
                    keep = True
            rt.errfile.close()
        reap()
        if keep:
            print(f"bench: leaving {scratch} for the containers above", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, old)


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50, help="timed runs per runtime (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--bundle", default=None,
                   help=f"busybox bundle to use (default {DEFAULT_BUNDLE}, built if missing)")
    p.add_argument("--pyruntime", default=os.path.join(REPO, ".venv", "bin", "pyruntime"))
    p.add_argument("--runc", default="runc", help="runc binary ('' to leave out)")
    p.add_argument("--crun", default="crun", help="crun binary ('' to leave out)")
    p.add_argument("--no-namespace", action="store_true",
                   help="stay in the host mount namespace (crun fails on hybrid cgroups)")
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        print("bench: must run as root", file=sys.stderr)
        return 1
    if args.bundle is None:
        args.bundle = DEFAULT_BUNDLE
        if not os.path.exists(os.path.join(args.bundle, "config.json")):
            subprocess.run([os.path.join(REPO, "rootfs-tools", "build-busybox-bundle"),
                            args.bundle], check=True)
    args.bundle = os.path.abspath(args.bundle)
    if not os.path.exists(os.path.join(args.bundle, "config.json")):
        print(f"bench: {args.bundle}/config.json not found; build one with "
              "rootfs-tools/build-busybox-bundle", file=sys.stderr)
        return 1

    if not args.no_namespace:
        enter_namespace(argv)
    args.cgroups = cgroup_mode()   # before the unified hierarchy is hidden
    where = hide_unified_cgroup()
    become_subreaper()

    # SIGTERM unwinds like Ctrl-C, so the finally below cleans up.
    signal.signal(signal.SIGTERM, interrupted)
    scratch = tempfile.mkdtemp(prefix="pyruntime-bench-", dir="/run")
    runtimes: list[Runtime] = []
    try:
        bundles = prepare_bundles(args.bundle, scratch)
        runtimes = find_runtimes(args, scratch)
        if not runtimes:
            print("bench: no runtime to measure", file=sys.stderr)
            return 1
        exec_ids = start_exec_targets(runtimes, bundles)
        times = measure(runtimes, bundles, args.runs, args.warmup, exec_ids)
        report(runtimes, times, args, where)
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        cleanup(runtimes, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
