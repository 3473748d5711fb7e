"""`update`'s flags (runc's spelling) turned into an OCI `linux.resources` object, and
the size and duration values they take ("64m", "1g", "500ms", "5s")."""
from __future__ import annotations

from pyruntime.cli.args import Flag, UsageError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
               "p": 1 << 50}

# flag name -> (section, key, parser name)
_MAPPING = {
    "blkio-weight": ("blockIO", "weight", "int"),
    "cpu-period": ("cpu", "period", "int"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "int"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu-share": ("cpu", "shares", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "kernel-memory": ("memory", "kernel", "size"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "size"),
    "memory": ("memory", "limit", "size"),
    "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"),
    "pids-limit": ("pids", "limit", "int"),
}

UPDATE_FLAGS = [Flag("resources", str, aliases=("r",),
                     help="path to a file with an OCI linux.resources object, - for stdin")]
UPDATE_FLAGS += [Flag(name, str, help=f"{section}.{key}")
                 for name, (section, key, _) in _MAPPING.items()]
UPDATE_FLAGS += [Flag("l3-cache-schema", str, help="Intel RDT (not supported)"),
                 Flag("mem-bw-schema", str, help="Intel RDT (not supported)")]


def parse_size(text: str, flag: str) -> int:
    """Bytes from docker/runc-style sizes: 1024, 64m, 1g, 512KiB; -1 means unlimited."""
    value = text.strip().lower()
    if value == "-1":
        return -1
    for suffix in ("ib", "b"):
        if value.endswith(suffix) and len(value) > len(suffix):
            value = value[: -len(suffix)]
            break
    unit = value[-1] if value and value[-1] in _SIZE_UNITS else ""
    number = value[: len(value) - len(unit)]
    try:
        return int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise UsageError(f"--{flag}: invalid size {text!r} (use e.g. 67108864, 64m, 1g)") from None


def parse_duration(text: str, flag: str) -> float:
    """Seconds from Go-style durations: 5s, 500ms, 1m, 1.5s."""
    units = (("ms", 0.001), ("us", 0.000001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * scale
            except ValueError:
                break
    raise UsageError(f"--{flag}: invalid duration {text!r} (use e.g. 5s, 500ms)")


def resources_from_flags(parsed) -> dict:
    if parsed.l3_cache_schema or parsed.mem_bw_schema:
        raise UsageError("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported")
    if parsed.resources:
        from pyruntime import jsonlite

        try:
            if parsed.resources == "-":
                import sys

                raw = sys.stdin.read()
            else:
                with open(parsed.resources) as f:
                    raw = f.read()
            resources = jsonlite.loads(raw)
        except OSError as error:
            raise UsageError(f"--resources {parsed.resources}: {error.strerror}") from None
        except ValueError as error:
            raise UsageError(f"--resources: invalid JSON: {error}") from None
        if not isinstance(resources, dict):
            raise UsageError("--resources: expected a JSON object (OCI linux.resources)")
    else:
        resources = {}
    for name, (section, key, kind) in _MAPPING.items():
        value = getattr(parsed, name.replace("-", "_"))
        if value is None:
            continue
        if kind == "size":
            converted = parse_size(value, name)
        elif kind == "int":
            try:
                converted = int(value)
            except ValueError:
                raise UsageError(f"--{name}: {value!r} is not a number") from None
        else:
            converted = value
        resources.setdefault(section, {})[key] = converted
    if not resources:
        raise UsageError("update: nothing to update (give --resources or a limit flag)")
    return resources
