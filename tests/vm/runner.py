"""Run a command inside the cgroup-v2 test VM, against this checkout's own code.

    .venv/bin/python tests/vm/runner.py [--build-only] [--systemd] [--timeout S] [-- COMMAND...]

boots qemu (software emulation: never KVM, it hangs on the development hosts) with a
Debian kernel and an initramfs (build_boot_files.py, cached), which mounts the host's root
read-only over 9p under a tmpfs overlay and switch_roots into it (init.sh). So the VM runs
the host's own Python and the checkout's .venv, with cgroup v2 mounted on /sys/fs/cgroup
and every controller enabled. COMMAND (default: the VM's tests, `pytest -q -m vm
tests/vm`) runs as root in the checkout (or --cwd) with PATH, HOME=/root,
PYRUNTIME_IN_VM=1 and PYTHONDONTWRITEBYTECODE=1; its output is printed as it comes and the
runner exits with its exit code (124 on timeout, 125 when the VM failed to run it).

With --systemd (run_in_vm(..., systemd=True)) the VM's init execs systemd as PID 1 instead
of running the command itself: systemd mounts cgroup2, starts the D-Bus system bus and
runs the command as pyruntime-vm-command.service (tests/vm/systemd/), then powers off.
The default command is then the systemd tests, `pytest -q -m systemd tests/vm`.

A second, writable 9p share (a host temporary directory, /run/vm/results in the VM)
carries the command in and its output and exit code out. The host's busybox bundle
(rootfs-tools/build-busybox-bundle, built if needed under the VM cache) is offered to the
tests as $PYRUNTIME_VM_BUNDLE.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _load_sibling(name: str):
    """Import tests/vm/<name>.py by path: this file runs as a script and is loaded by path
    from tests/test_vm_suite.py, so neither a package import nor sys.path can be relied
    on (and sys.path is left alone)."""
    qualified = f"pyruntime_vm_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module        # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[qualified]


build_boot_files = _load_sibling("build_boot_files")

QEMU = "qemu-system-x86_64"
DEFAULT_COMMAND = [".venv/bin/python", "-m", "pytest", "-q", "-m", "vm", "tests/vm"]
SYSTEMD_COMMAND = [".venv/bin/python", "-m", "pytest", "-q", "-m", "systemd", "tests/vm"]
BUNDLE_DIR = build_boot_files.DEFAULT_CACHE / "busybox-bundle"
MEMORY_MB = int(os.environ.get("PYRUNTIME_VM_MEMORY_MB", "2048"))
CPUS = int(os.environ.get("PYRUNTIME_VM_CPUS", "2"))

EXIT_TIMEOUT = 124
EXIT_VM_FAILED = 125


class VMError(Exception):
    """The VM could not be started (qemu missing, boot files not buildable)."""


def qemu_binary() -> str | None:
    return shutil.which(QEMU)


def ensure_bundle(dest: Path = BUNDLE_DIR) -> Path:
    """The busybox OCI bundle the VM tests run (cheap when up to date)."""
    tool = REPO / "rootfs-tools" / "build-busybox-bundle"
    env = dict(os.environ, PYTHON=str(REPO / ".venv" / "bin" / "python"),
               PYRUNTIME=str(REPO / ".venv" / "bin" / "pyruntime"))
    proc = subprocess.run([str(tool), str(dest)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise VMError(f"{tool} {dest} failed:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return dest


def qemu_command(boot: build_boot_files.BootFiles, results: Path, console: Path,
                 systemd: bool = False) -> list[str]:
    qemu = qemu_binary()
    if qemu is None:
        raise VMError(f"{QEMU} is not installed: apt-get install -y qemu-system-x86 "
                      "(.ci/setup installs it)")
    append = f"console=ttyS0 quiet panic=-1 pyruntime.epoch={int(time.time())}"
    if systemd:
        # init.sh then execs systemd; the rest tells systemd to stay quiet on the console.
        append += " pyruntime.systemd=1 systemd.show_status=0"
    return [
        qemu, "-machine", "q35", "-cpu", "max", "-m", str(MEMORY_MB), "-smp", str(CPUS),
        # No KVM, ever: it hangs on the development hosts. TCG is the default accelerator.
        "-accel", "tcg",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{console}", "-monitor", "none", "-nic", "none",
        "-kernel", str(boot.vmlinuz), "-initrd", str(boot.initrd), "-append", append,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                   "multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
    ]


def _command_script(command: list[str], cwd: str, env: dict[str, str]) -> str:
    lines = ["# written by tests/vm/runner.py; run by the VM's init (stage 2)",
             f"cd {shlex.quote(cwd)} || exit {EXIT_VM_FAILED}"]
    for key, value in env.items():
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_in_vm(command: list[str], timeout: int = 900, cwd: str | os.PathLike = REPO,
              env: dict[str, str] | None = None, stream: TextIO | None = None,
              bundle: bool = True, systemd: bool = False) -> tuple[int, str]:
    """Boot the VM, run `command` in `cwd` as root, power off. Returns (exit code, output:
    the command's stdout and stderr together). `env` is added to the VM's environment;
    `stream`, when given, receives the output while the command runs; `bundle` builds the
    busybox bundle on the host and passes it as $PYRUNTIME_VM_BUNDLE; `systemd` boots
    systemd as PID 1 and runs the command as a service of it.

    Exit code 124 when the command did not finish within `timeout` seconds (the VM is
    killed), 125 when the VM did not run it at all (boot failure; the output then ends with
    the VM's console log). Raises VMError when qemu is missing or the boot files cannot be
    built."""
    try:
        boot = build_boot_files.ensure_boot_files()
    except build_boot_files.BootFilesError as e:
        raise VMError(str(e)) from None
    env = dict(env or {})
    if bundle and "PYRUNTIME_VM_BUNDLE" not in env:
        env["PYRUNTIME_VM_BUNDLE"] = str(ensure_bundle())
    with tempfile.TemporaryDirectory(prefix="pyruntime-vm-") as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        console = Path(tmp) / "console.log"
        (results / "command.sh").write_text(_command_script(list(command), str(cwd), env))
        output_file = results / "output"
        cmd = qemu_command(boot, results, console, systemd=systemd)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        streamed = 0
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                if stream is not None:
                    streamed = _stream_new(output_file, streamed, stream)
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            qemu_output = proc.communicate()[0].decode(errors="replace")
        if stream is not None:
            _stream_new(output_file, streamed, stream)
        output = output_file.read_text(errors="replace") if output_file.exists() else ""
        code_file = results / "exit_code"
        if timed_out:
            return EXIT_TIMEOUT, (output + f"\n[runner] timed out after {timeout}s; "
                                  f"VM console (last lines):\n{_tail(console)}\n")
        if not code_file.exists():
            return EXIT_VM_FAILED, (
                output + f"\n[runner] the VM did not run the command (qemu exit "
                f"{proc.returncode}). qemu said:\n{qemu_output.strip()}\n"
                f"VM console (last lines):\n{_tail(console)}\n")
        return int(code_file.read_text().strip() or EXIT_VM_FAILED), output


def _stream_new(path: Path, offset: int, stream: TextIO) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    if data:
        stream.write(data.decode(errors="replace"))
        stream.flush()
    return offset + len(data)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(
        description="Run a command inside the cgroup-v2 test VM.",
        usage="%(prog)s [--build-only] [--systemd] [--timeout S] [--cwd DIR] [-- COMMAND...]")
    ap.add_argument("--build-only", action="store_true",
                    help="build (or check) the cached boot files and the bundle, then exit")
    ap.add_argument("--systemd", action="store_true",
                    help="boot systemd as PID 1 and run COMMAND as its service "
                         "(default COMMAND: the systemd tests)")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--cwd", default=str(REPO), help="directory to run COMMAND in")
    args = ap.parse_args(argv)
    try:
        if args.build_only:
            boot = build_boot_files.ensure_boot_files()
            for note in boot.notes:
                print(f"runner: {note}", file=sys.stderr)
            print(f"kernel {boot.kernel_version}: {boot.directory}")
            print(f"bundle: {ensure_bundle()}")
            if qemu_binary() is None:
                print(f"runner: {QEMU} is not installed (apt-get install -y qemu-system-x86)",
                      file=sys.stderr)
                return 1
            return 0
        started = time.monotonic()
        default = SYSTEMD_COMMAND if args.systemd else DEFAULT_COMMAND
        code, output = run_in_vm(command or default, timeout=args.timeout,
                                 cwd=args.cwd, stream=sys.stdout, systemd=args.systemd)
    except VMError as e:
        print(f"runner: {e}", file=sys.stderr)
        return EXIT_VM_FAILED
    if code in (EXIT_TIMEOUT, EXIT_VM_FAILED) and "[runner]" in output:
        sys.stdout.write(output[output.rindex("\n[runner]"):])
    print(f"runner: exit {code} after {time.monotonic() - started:.1f}s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
