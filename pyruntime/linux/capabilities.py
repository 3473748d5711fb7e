"""Linux capabilities: names and numbers, and setting a process's five capability sets.

Names are the kernel's (`CAP_SYS_ADMIN`); the table follows linux/capability.h up to
CAP_CHECKPOINT_RESTORE (40). The running kernel may know fewer: `last_cap()` tells.

Applying the OCI `process.capabilities` follows runc: the bounding set is reduced first
(it needs CAP_SETPCAP, so before anything drops it), then effective/permitted/inheritable
are set exactly with capset(2), then the ambient set is cleared and refilled. A container
init that changes uid in between calls `drop_bounding_set` before setuid (with
`process_control.set_keepcaps(True)`) and `set_capabilities` after it, as runc does.
"""
from __future__ import annotations

import os

from pyruntime._native import ffi, lib
from pyruntime.linux import process_control
from pyruntime.linux.capability_names import CAPABILITIES, CAPABILITY_NAMES  # noqa: F401
from pyruntime.linux.errors import CapabilityError

_EINVAL = 22  # errno.EINVAL, without importing errno on the exec path


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITY_NAMES)


def cap_numbers(names: list[str]) -> set[int]:
    """The numbers of capability `names` (`CAP_...`); CapabilityError names an unknown one."""
    numbers: set[int] = set()
    for name in names:
        number = CAPABILITIES.get(name)
        if number is None:
            raise CapabilityError(
                f"unknown capability {name!r}: expected a kernel name such as CAP_NET_BIND_SERVICE"
            )
        numbers.add(number)
    return numbers


def cap_names(mask: int) -> list[str]:
    """The names of the capabilities set in a 64-bit `mask` (unnamed ones as CAP_<n>)."""
    return [
        CAPABILITY_NAMES.get(number, f"CAP_{number}")
        for number in range(64)
        if mask >> number & 1
    ]


def _mask(caps: set[int], last: int) -> int:
    # Capabilities the kernel does not have are ignored, as runc does: the same spec must
    # run on an older kernel than the one it was written for.
    mask = 0
    for cap in caps:
        if 0 <= cap <= last:
            mask |= 1 << cap
    return mask


def _name(cap: int) -> str:
    return CAPABILITY_NAMES.get(cap, f"capability {cap}")


def drop_bounding_set(keep: set[int]) -> None:
    """Drop from the bounding set every capability the kernel has that is not in `keep`.

    Needs CAP_SETPCAP in the effective set. Caps in `keep` above the kernel's last cap are
    ignored; a cap the kernel reports as invalid (EINVAL) is already absent.
    """
    for cap in range(last_cap() + 1):
        if cap in keep:
            continue
        try:
            process_control.capbset_drop(cap)
            continue
        except OSError as e:
            err = e.errno or 0
        except ValueError:
            # python-prctl only knows the caps of the headers it was built with; a newer
            # kernel may have more, and they must leave the bounding set too (a setuid
            # binary in the container would otherwise get them).
            err = _native_capbset_drop(cap)
            if err == 0:
                continue
        if err != _EINVAL:
            raise CapabilityError(
                f"dropping {_name(cap)} from the bounding set: {os.strerror(err)}"
                " (the runtime needs CAP_SETPCAP in its effective set)"
            )


def _native_capbset_drop(cap: int) -> int:
    """prctl(PR_CAPBSET_DROP, cap) without python-prctl's table check: 0 or the errno."""
    if lib.pyrt_capbset_drop(cap) == -1:
        return ffi.errno
    return 0


def set_capabilities(
    effective: set[int], permitted: set[int], inheritable: set[int], ambient: set[int]
) -> list[int]:
    """Set the effective, permitted and inheritable sets exactly, then the ambient set.

    An ambient cap must be in both permitted and inheritable (the kernel's rule); one that
    is not, or that the kernel refuses to raise, is skipped rather than fatal, as runc does
    (it logs a warning). Returns the skipped ambient caps so the caller can log them.
    """
    last = last_cap()
    eff, prm, inh = _mask(effective, last), _mask(permitted, last), _mask(inheritable, last)
    if (
        lib.pyrt_capset(
            eff & 0xFFFFFFFF, eff >> 32, prm & 0xFFFFFFFF, prm >> 32, inh & 0xFFFFFFFF, inh >> 32
        )
        == -1
    ):
        err = ffi.errno
        raise CapabilityError(
            f"capset(effective={eff:#x}, permitted={prm:#x}, inheritable={inh:#x}):"
            f" {os.strerror(err)} (effective must be within permitted, and neither may"
            " exceed what the runtime itself holds)"
        )
    if lib.pyrt_ambient_clear_all() == -1:
        err = ffi.errno
        raise CapabilityError(f"clearing the ambient capability set: {os.strerror(err)}")
    skipped: list[int] = []
    for cap in sorted(ambient):
        if not (0 <= cap <= last) or not (prm >> cap & 1 and inh >> cap & 1):
            skipped.append(cap)
            continue
        if lib.pyrt_ambient_raise(cap) == -1:
            # E.g. SECBIT_NO_CAP_AMBIENT_RAISE is set: runc only warns.
            skipped.append(cap)
    return skipped


def apply_process_capabilities(caps: dict | None) -> list[int]:
    """Apply the OCI `process.capabilities` object: bounding set first, then the others.

    A missing list means the empty set. `None` (no `capabilities` in the spec) leaves the
    process's capabilities as they are, which is runc's behaviour. Returns the ambient caps
    that had to be skipped (see `set_capabilities`).
    """
    if caps is None:
        return []
    bounding = cap_numbers(caps.get("bounding") or [])
    effective = cap_numbers(caps.get("effective") or [])
    permitted = cap_numbers(caps.get("permitted") or [])
    inheritable = cap_numbers(caps.get("inheritable") or [])
    ambient = cap_numbers(caps.get("ambient") or [])
    drop_bounding_set(bounding)
    return set_capabilities(effective, permitted, inheritable, ambient)


_STATUS_FIELDS = {
    b"CapInh": "inheritable",
    b"CapPrm": "permitted",
    b"CapEff": "effective",
    b"CapBnd": "bounding",
    b"CapAmb": "ambient",
}


def current_capabilities(pid: int | str = "self") -> dict[str, int]:
    """The five capability sets of process `pid` as 64-bit masks, read from /proc/PID/status.

    Keys are the OCI names: bounding, effective, inheritable, permitted, ambient.
    """
    sets: dict[str, int] = {}
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            key, _, value = line.partition(b":")
            name = _STATUS_FIELDS.get(key)
            if name is not None:
                sets[name] = int(value.strip(), 16)
    return sets
