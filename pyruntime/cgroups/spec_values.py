"""Reading values out of the OCI `linux.resources` object with errors that name the
field: the spec is only loosely type-checked before it gets here, and a wrong type must
become a message about `linux.resources.memory.limit`, not a TypeError."""
from __future__ import annotations

from pyruntime.cgroups.errors import InvalidResource, ResourceUnsupported

PREFIX = "linux.resources"


def section(resources: dict, key: str, known: set[str]) -> dict:
    """`resources[key]` as a dict ({} when absent); fields outside `known` are refused
    rather than ignored (a limit the runtime does not know is a limit not enforced)."""
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidResource(f"{PREFIX}.{key}: expected an object")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ResourceUnsupported(
            f"{PREFIX}.{key}.{unknown[0]}: not a field this runtime knows how to enforce")
    return value


def integer(obj: dict, key: str, field: str, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    """An integer field, or None when absent/null."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InvalidResource(f"{field}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidResource(f"{field}: {value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidResource(f"{field}: {value} is above the maximum {maximum}")
    return value


def string(obj: dict, key: str, field: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidResource(f"{field}: expected a string, got {value!r}")
    return value


def boolean(obj: dict, key: str, field: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidResource(f"{field}: expected true or false, got {value!r}")
    return value


def object_list(obj: dict, key: str, field: str) -> list[dict]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidResource(f"{field}: expected a list of objects")
    return value


def throttle_devices(block_io: dict, key: str) -> list[tuple[int, int, int]]:
    """blockIO.throttle*Device entries as (major, minor, rate)."""
    field = f"{PREFIX}.blockIO.{key}"
    result = []
    for index, entry in enumerate(object_list(block_io, key, field)):
        where = f"{field}[{index}]"
        major = integer(entry, "major", f"{where}.major", minimum=0)
        minor = integer(entry, "minor", f"{where}.minor", minimum=0)
        rate = integer(entry, "rate", f"{where}.rate", minimum=0)
        if major is None or minor is None or rate is None:
            raise InvalidResource(f"{where}: major, minor and rate are required")
        result.append((major, minor, rate))
    return result


def rdma_limits(resources: dict) -> list[tuple[str, str]]:
    """`linux.resources.rdma` as (field, `rdma.max` line) pairs; the file and its format
    are the same in cgroup v1 and v2."""
    rdma = resources.get("rdma")
    if not rdma:
        return []
    if not isinstance(rdma, dict):
        raise InvalidResource(f"{PREFIX}.rdma: expected an object")
    lines = []
    for device, limits in sorted(rdma.items()):
        where = f"{PREFIX}.rdma.{device}"
        if not isinstance(limits, dict):
            raise InvalidResource(f"{where}: expected an object")
        parts = [device]
        handles = integer(limits, "hcaHandles", f"{where}.hcaHandles", minimum=0)
        objects = integer(limits, "hcaObjects", f"{where}.hcaObjects", minimum=0)
        if handles is not None:
            parts.append(f"hca_handle={handles}")
        if objects is not None:
            parts.append(f"hca_object={objects}")
        if len(parts) > 1:
            lines.append((where, " ".join(parts)))
    return lines


def hugepage_limits(resources: dict) -> list[tuple[str, str, int]]:
    """`linux.resources.hugepageLimits` as (field, page size, limit) triples; v1 and v2
    differ only in the file name they write."""
    field = f"{PREFIX}.hugepageLimits"
    limits = []
    for index, entry in enumerate(object_list(resources, "hugepageLimits", field)):
        where = f"{field}[{index}]"
        size = string(entry, "pageSize", f"{where}.pageSize")
        limit = integer(entry, "limit", f"{where}.limit", minimum=0)
        if not size or limit is None:
            raise InvalidResource(f"{where}: pageSize and limit are required")
        limits.append((where, size, limit))
    return limits
