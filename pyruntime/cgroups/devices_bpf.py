"""The cgroup v2 device filter: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) generated
from the container's device rules, loaded with bpf(2) and attached to its cgroup.

cgroup v2 has no devices controller; the kernel instead runs the programs attached to a
task's cgroup (and its ancestors) on every open and mknod of a device node. The program is
generated exactly like runc's (libcontainer/cgroups/devices/devicefilter.go, from crun's
ebpf.c): the rules are first replayed through the v1 emulator (`DeviceEmulator`), giving a
default policy and exceptions; the program loads the request into registers, has one
block per exception ("if type, access, major and minor match, return the exception's
verdict"), and ends returning the default policy.

    R2 = device type (BPF_DEVCG_DEV_BLOCK 1 / CHAR 2), R3 = requested access
    (MKNOD 1 | READ 2 | WRITE 4), R4 = major, R5 = minor   (struct bpf_cgroup_dev_ctx)

Attaching uses BPF_F_ALLOW_MULTI (so a parent's filter still applies too, as runc does);
an update replaces the program atomically with BPF_F_REPLACE when exactly one of ours is
attached, otherwise attaches the new one and then detaches the old ones (during the
overlap both apply: the stricter wins, never the looser).
"""
from __future__ import annotations

import errno
import os
import resource
import struct
from collections import namedtuple

from pyruntime.cgroups.device_rules import WILDCARD, DeviceEmulator, DeviceRule
from pyruntime.cgroups.errors import DeviceFilterError

# bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2

BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

#: The license string, as runc (the program derives from crun's, relicensed Apache-2.0).
LICENSE = "Apache"
PROGRAM_NAME = "pyrt_devices"

# Opcodes: class | operation | source (include/uapi/linux/bpf_common.h, bpf.h).
_BPF_LDX, _BPF_ALU, _BPF_JMP = 0x01, 0x04, 0x05
_BPF_W, _BPF_MEM = 0x00, 0x60
_BPF_K, _BPF_X = 0x00, 0x08
_BPF_AND, _BPF_RSH, _BPF_MOV = 0x50, 0x70, 0xB0
_BPF_JNE, _BPF_EXIT = 0x50, 0x90

LDX_MEM_W = _BPF_LDX | _BPF_MEM | _BPF_W  # 0x61
AND32_IMM = _BPF_ALU | _BPF_AND | _BPF_K  # 0x54
RSH32_IMM = _BPF_ALU | _BPF_RSH | _BPF_K  # 0x74
MOV32_IMM = _BPF_ALU | _BPF_MOV | _BPF_K  # 0xb4
MOV32_REG = _BPF_ALU | _BPF_MOV | _BPF_X  # 0xbc
JNE_IMM = _BPF_JMP | _BPF_JNE | _BPF_K  # 0x55
JNE_REG = _BPF_JMP | _BPF_JNE | _BPF_X  # 0x5d
EXIT = _BPF_JMP | _BPF_EXIT  # 0x95

# Names in cilium/ebpf's listing format, which runc's devicefilter_test.go compares.
_NAMES = {LDX_MEM_W: "LdXMemW", AND32_IMM: "AndImm32", RSH32_IMM: "RShImm32",
          MOV32_IMM: "MovImm32", MOV32_REG: "MovReg32", JNE_IMM: "JNEImm",
          JNE_REG: "JNEReg", EXIT: "Exit"}


class Instruction(namedtuple("Instruction", "code dst src off imm target",
                             defaults=(0, 0, 0, 0, None))):
    """One struct bpf_insn: u8 code, u8 dst_reg:4 src_reg:4, s16 off, s32 imm; `target`
    is the block a jump goes to (resolved into `off` by `DeviceFilterProgram`)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)

    def describe(self) -> str:
        """cilium/ebpf's text for the instruction, with the jump target unresolved
        (off -1 and <block-N>), as in runc's devicefilter_test.go."""
        name = _NAMES[self.code]
        if self.code == LDX_MEM_W:
            return f"{name} dst: r{self.dst} src: r{self.src} off: {self.off} imm: {self.imm}"
        if self.code in (AND32_IMM, RSH32_IMM, MOV32_IMM):
            return f"{name} dst: r{self.dst} imm: {self.imm}"
        if self.code == MOV32_REG:
            return f"{name} dst: r{self.dst} src: r{self.src}"
        if self.code == JNE_IMM:
            return f"{name} dst: r{self.dst} off: -1 imm: {self.imm} <{self.target}>"
        if self.code == JNE_REG:
            return f"{name} dst: r{self.dst} off: -1 src: r{self.src} <{self.target}>"
        return name


class DeviceFilterProgram:
    """A generated program: its instructions (jumps resolved), where each block
    starts, and the rules it came from."""

    def __init__(self, instructions: list[Instruction], labels: dict[int, str],
                 default_allow: bool, exceptions: list[DeviceRule],
                 license: str = LICENSE) -> None:
        self.instructions = instructions
        self.labels = labels
        self.default_allow = default_allow
        self.exceptions = exceptions
        self.license = license

    def encode(self) -> bytes:
        return b"".join(i.encode() for i in self.instructions)

    def listing(self) -> str:
        """The program in runc's test format: "block-N:" lines before each block and
        "INDEX: INSTRUCTION" lines."""
        lines = []
        for index, insn in enumerate(self.instructions):
            if index in self.labels:
                lines.append(f"{self.labels[index]}:")
            lines.append(f"{index}: {insn.describe()}")
        return "\n".join(lines)


def generate(rules: list[DeviceRule]) -> DeviceFilterProgram:
    """The filter for a rule list (already including the default allow-list, if any)."""
    emulator = DeviceEmulator.from_rules(rules)
    clean = emulator.rules()
    insns: list[Instruction] = [
        # struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        Instruction(LDX_MEM_W, dst=2, src=1, off=0),  # R2 = access_type & 0xffff (type)
        Instruction(AND32_IMM, dst=2, imm=0xFFFF),
        Instruction(LDX_MEM_W, dst=3, src=1, off=0),  # R3 = access_type >> 16 (access)
        Instruction(RSH32_IMM, dst=3, imm=16),
        Instruction(LDX_MEM_W, dst=4, src=1, off=4),  # R4 = major
        Instruction(LDX_MEM_W, dst=5, src=1, off=8),  # R5 = minor
    ]
    labels: dict[int, str] = {}
    exceptions: list[DeviceRule] = []
    block = 0
    for index, rule in enumerate(clean):
        if rule.type == "a":
            # Only a leading "allow all" that switches the emulator to a black-list.
            if index != 0 or rule.allow != emulator.default_allow:
                raise DeviceFilterError(f"internal error: misplaced wildcard rule {rule}")
            continue
        if rule.allow == emulator.default_allow:
            raise DeviceFilterError(f"internal error: no-op device rule {rule}")
        labels[len(insns)] = f"block-{block}"
        insns.extend(_rule_block(rule, f"block-{block + 1}"))
        exceptions.append(rule)
        block += 1
    labels[len(insns)] = f"block-{block}"
    insns.append(Instruction(MOV32_IMM, dst=0, imm=1 if emulator.default_allow else 0))
    insns.append(Instruction(EXIT))
    return DeviceFilterProgram(_resolve(insns, labels), labels, emulator.default_allow,
                               exceptions)


def _rule_block(rule: DeviceRule, next_block: str) -> list[Instruction]:
    kind = BPF_DEVCG_DEV_CHAR if rule.type == "c" else BPF_DEVCG_DEV_BLOCK
    access = 0
    for letter in rule.access:
        access |= {"r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE,
                   "m": BPF_DEVCG_ACC_MKNOD}[letter]
    block = [Instruction(JNE_IMM, dst=2, imm=kind, target=next_block)]
    if access != BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD:
        # The request must be a subset of the rule's access: (R3 & access) == R3.
        block += [Instruction(MOV32_REG, dst=1, src=3),
                  Instruction(AND32_IMM, dst=1, imm=access),
                  Instruction(JNE_REG, dst=1, src=3, target=next_block)]
    if rule.major != WILDCARD:
        block.append(Instruction(JNE_IMM, dst=4, imm=_imm32(rule.major), target=next_block))
    if rule.minor != WILDCARD:
        block.append(Instruction(JNE_IMM, dst=5, imm=_imm32(rule.minor), target=next_block))
    block.append(Instruction(MOV32_IMM, dst=0, imm=1 if rule.allow else 0))
    block.append(Instruction(EXIT))
    return block


def _imm32(value: int) -> int:
    # The kernel compares the zero-extended u32 register with the sign-extended imm, as
    # runc's int32(major) does; numbers above 2^31 do not occur in practice.
    return value - 2**32 if value >= 2**31 else value


def _resolve(insns: list[Instruction], labels: dict[int, str]) -> list[Instruction]:
    where = {name: index for index, name in labels.items()}
    resolved = []
    for index, insn in enumerate(insns):
        if insn.target is not None:
            insn = Instruction(insn.code, insn.dst, insn.src, where[insn.target] - index - 1,
                               insn.imm, insn.target)
        resolved.append(insn)
    return resolved


# --------------------------------------------------------------------------- bpf(2)
def _bpf(cmd: int, attr: bytes, what: str, writeback: bool = False) -> tuple[int, bytes]:
    from pyruntime._native import ffi, lib  # the compiled module, only when loading

    buffer = ffi.new("char[]", attr)
    result = lib.pyrt_bpf(cmd, buffer, len(attr))
    if result < 0:
        error = ffi.errno
        raise OSError(error, f"bpf({what}): {os.strerror(error)}")
    return int(result), (bytes(ffi.buffer(buffer, len(attr))) if writeback else b"")


def _address(keep: list, data: bytes) -> int:
    from pyruntime._native import ffi

    buffer = ffi.new("char[]", data)
    keep.append(buffer)  # the caller keeps the buffer alive across the syscall
    return int(ffi.cast("uintptr_t", buffer))


def load(program: DeviceFilterProgram) -> int:
    """BPF_PROG_LOAD; returns the program fd. A verifier refusal is reported with the
    verifier's log."""
    try:
        return _load(program, log_size=0)
    except OSError as error:
        if error.errno == errno.EPERM and _raise_memlock():
            # Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; runc raises it
            # too. Only for this load: the limit is restored (it would otherwise be
            # inherited by a container forked later from this process).
            try:
                return _load(program, log_size=0)
            except OSError as again:
                error = again
            finally:
                _restore_memlock()
        if error.errno in (errno.EINVAL, errno.EACCES):
            log = ""
            try:
                _load(program, log_size=1 << 16)
            except OSError as verbose:
                log = getattr(verbose, "verifier_log", "")
            raise DeviceFilterError(
                f"loading the cgroup device filter (eBPF) failed: {error.strerror}"
                + (f"; verifier log:\n{log}" if log else "")) from None
        if error.errno == errno.EPERM:
            raise DeviceFilterError(
                "loading the cgroup device filter (eBPF) was refused (EPERM): the runtime "
                "needs CAP_SYS_ADMIN (or CAP_BPF) to restrict devices on cgroup v2") from None
        raise DeviceFilterError(f"loading the cgroup device filter (eBPF): {error}") from None


def _load(program: DeviceFilterProgram, log_size: int) -> int:
    keep: list = []
    code = program.encode()
    log_address = _address(keep, b"\0" * log_size) if log_size else 0
    log_buffer = keep[-1] if log_size else None
    attr = struct.pack(
        "<IIQQIIQII16sII",
        BPF_PROG_TYPE_CGROUP_DEVICE, len(program.instructions), _address(keep, code),
        _address(keep, program.license.encode() + b"\0"),
        1 if log_size else 0, log_size, log_address,
        0, 0, PROGRAM_NAME.encode(), 0, 0)
    try:
        fd, _ = _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError as error:
        if log_size:
            from pyruntime._native import ffi

            raw = bytes(ffi.buffer(log_buffer, log_size))
            error.verifier_log = raw.split(b"\0", 1)[0].decode(errors="replace")[-2000:]
        raise
    return fd


_saved_memlock: tuple[int, int] | None = None


def _raise_memlock() -> bool:
    global _saved_memlock
    current = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if current[0] == resource.RLIM_INFINITY:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        return False
    _saved_memlock = current
    return True


def _restore_memlock() -> None:
    global _saved_memlock
    if _saved_memlock is not None:
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, _saved_memlock)
        except (OSError, ValueError):
            pass
        _saved_memlock = None


def _open_dir(cgroup_dir: str) -> int:
    try:
        return os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise DeviceFilterError(f"opening cgroup {cgroup_dir}: {error.strerror}") from None


def attached_program_ids(cgroup_dir: str) -> list[int]:
    """IDs of the BPF_CGROUP_DEVICE programs attached to this cgroup itself."""
    from pyruntime._native import ffi

    dir_fd = _open_dir(cgroup_dir)
    try:
        count = 64  # the kernel's limit of programs per cgroup and attach type
        for _ in range(10):
            keep: list = []
            ids_buffer = ffi.new("uint32_t[]", count)
            keep.append(ids_buffer)
            attr = struct.pack("<IIIIQI4x", dir_fd, BPF_CGROUP_DEVICE, 0, 0,
                               int(ffi.cast("uintptr_t", ids_buffer)), count)
            try:
                _, out = _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY", writeback=True)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    count *= 2  # more than the buffer holds (a future kernel limit)
                    continue
                raise DeviceFilterError(
                    f"listing the device filters of {cgroup_dir}: {error.strerror}") from None
            found = struct.unpack_from("<I", out, 24)[0]
            return [int(ids_buffer[i]) for i in range(min(found, count))]
        raise DeviceFilterError(f"listing the device filters of {cgroup_dir}: too many")
    finally:
        os.close(dir_fd)



def _program_fd(program_id: int) -> int:
    fd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", program_id, 0, 0),
                 "BPF_PROG_GET_FD_BY_ID")
    return fd


def _attach(dir_fd: int, prog_fd: int, flags: int, replace_fd: int = 0) -> None:
    _bpf(BPF_PROG_ATTACH,
         struct.pack("<IIIII", dir_fd, prog_fd, BPF_CGROUP_DEVICE, flags, replace_fd),
         "BPF_PROG_ATTACH")


def _detach(dir_fd: int, prog_fd: int) -> None:
    _bpf(BPF_PROG_DETACH, struct.pack("<IIIII", dir_fd, prog_fd, BPF_CGROUP_DEVICE, 0, 0),
         "BPF_PROG_DETACH")


def install(cgroup_dir: str, rules: list[DeviceRule]) -> DeviceFilterProgram:
    """Generate, load and attach the filter for `rules` to `cgroup_dir`, replacing the
    device filters already attached there (an update)."""
    program = generate(rules)
    old_ids = attached_program_ids(cgroup_dir)
    dir_fd = _open_dir(cgroup_dir)
    try:
        prog_fd = load(program)
    except BaseException:
        os.close(dir_fd)
        raise
    try:
        old_fds = []
        try:
            for program_id in old_ids:
                try:
                    old_fds.append(_program_fd(program_id))
                except OSError as error:
                    if error.errno == errno.ENOENT:
                        continue  # detached meanwhile
                    if error.errno in (errno.EPERM, errno.EACCES):
                        # An LSM may hide a program someone else attached; it can only
                        # add restrictions, so leaving it is safe (runc does the same).
                        continue
                    raise DeviceFilterError(
                        f"opening device filter {program_id} of {cgroup_dir}: "
                        f"{error.strerror}") from None
            replaced = False
            if len(old_fds) == 1:
                try:
                    _attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old_fds[0])
                    replaced = True
                except OSError as error:
                    if error.errno not in (errno.EINVAL, errno.ENOENT):
                        raise DeviceFilterError(
                            f"replacing the device filter of {cgroup_dir}: "
                            f"{error.strerror}") from None
                    # EINVAL: a kernel before 5.6 without BPF_F_REPLACE; attach + detach.
            if not replaced:
                try:
                    _attach(dir_fd, prog_fd, BPF_F_ALLOW_MULTI)
                except OSError as error:
                    raise DeviceFilterError(
                        f"attaching the device filter to {cgroup_dir} "
                        f"(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE): {error.strerror}") from None
                for old_fd in old_fds:
                    try:
                        _detach(dir_fd, old_fd)
                    except OSError as error:
                        if error.errno != errno.ENOENT:
                            raise DeviceFilterError(
                                f"detaching the old device filter of {cgroup_dir}: "
                                f"{error.strerror}") from None
        finally:
            for old_fd in old_fds:
                os.close(old_fd)
    finally:
        os.close(dir_fd)
        # The attachment holds the program; our fd is no longer needed.
        os.close(prog_fd)
    return program
