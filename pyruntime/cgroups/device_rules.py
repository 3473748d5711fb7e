"""Device access rules: parsing `linux.resources.devices`, runc's default allow-list,
and the emulator of the cgroup v1 devices controller that both cgroup versions use.

The emulator is runc's (libcontainer/cgroups/devices/devices_emulator.go): a rule list is
replayed the way the v1 devices controller would see it, giving a default policy (allow
or deny everything) plus a set of exceptions. That set is what the v2 eBPF filter is
generated from (so v2 behaves exactly like v1), and the emulator's `transition` gives the
minimal v1 writes to move a live cgroup from its current `devices.list` to a new rule set,
without a moment of deny-all for an update that only adds rules.

Like runc, an `a` (all devices) rule resets the policy; denying part of a wildcard
exception ("allow c *:* rwm" then "deny c 1:3 r") is refused, because v1 would silently
ignore it and leave the device open.
"""
from __future__ import annotations


from pyruntime.cgroups.errors import InvalidResource

WILDCARD = -1
_ACCESS_ORDER = "rwm"


def normalize_access(access: str) -> str:
    """"wr" -> "rw", "mrwr" -> "rwm"; unknown letters raise ValueError."""
    unknown = set(access) - set(_ACCESS_ORDER)
    if unknown:
        raise ValueError(f"unknown device access {''.join(sorted(unknown))!r} (use r, w, m)")
    return "".join(c for c in _ACCESS_ORDER if c in access)


def _union(a: str, b: str) -> str:
    return normalize_access(a + b)


def _difference(a: str, b: str) -> str:
    return "".join(c for c in a if c not in b)


def _intersection(a: str, b: str) -> str:
    return "".join(c for c in a if c in b)


class DeviceRule:
    """One device cgroup rule. `major`/`minor` are WILDCARD (-1) when the spec leaves
    them out; `type` is "a" (all), "b" (block) or "c" (char). Immutable and hashable.
    (Written out rather than a dataclass or namedtuple: importing those costs
    milliseconds on the container start path.)"""

    __slots__ = ("type", "major", "minor", "access", "allow")

    def __init__(self, type: str, major: int, minor: int, access: str, allow: bool) -> None:
        for name, value in zip(self.__slots__, (type, major, minor, access, allow)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DeviceRule is immutable")

    def _key(self) -> tuple:
        return (self.type, self.major, self.minor, self.access, self.allow)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceRule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "DeviceRule(type={!r}, major={!r}, minor={!r}, access={!r}, allow={!r})".format(
            *self._key())

    def cgroup_string(self) -> str:
        """The v1 `devices.allow`/`devices.deny` line: "c 1:3 rwm", "c 136:* rwm"."""
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def __str__(self) -> str:
        return f"{'allow' if self.allow else 'deny'} {self.cgroup_string()}"


def _c(major: int, minor: int, access: str = "rwm") -> DeviceRule:
    return DeviceRule("c", major, minor, access, True)


#: runc's specconv.AllowedDevices (runc 1.1), in runc's order: appended after the spec's
#: own rules, so every container can use the devices the runtime itself creates in /dev.
DEFAULT_ALLOWED_DEVICES: tuple[DeviceRule, ...] = (
    DeviceRule("c", WILDCARD, WILDCARD, "m", True),  # mknod of any char device...
    DeviceRule("b", WILDCARD, WILDCARD, "m", True),  # ...and block device (not open it)
    _c(1, 3),  # /dev/null
    _c(1, 8),  # /dev/random
    _c(1, 7),  # /dev/full
    _c(5, 0),  # /dev/tty
    _c(1, 5),  # /dev/zero
    _c(1, 9),  # /dev/urandom
    _c(136, WILDCARD),  # /dev/pts/* (and /dev/console, a bind mount of one)
    _c(5, 2),  # /dev/ptmx
    _c(10, 200),  # /dev/net/tun
)


def rules_from_spec(devices: object, field: str = "linux.resources.devices") -> list[DeviceRule]:
    """The OCI `linux.resources.devices` list as DeviceRules (type defaults to "a",
    access to "rwm", a missing major/minor to the wildcard)."""
    if devices is None:
        return []
    if not isinstance(devices, list):
        raise InvalidResource(f"{field}: expected a list of device rules")
    rules = []
    for index, entry in enumerate(devices):
        where = f"{field}[{index}]"
        if not isinstance(entry, dict):
            raise InvalidResource(f"{where}: expected an object")
        allow = entry.get("allow")
        if not isinstance(allow, bool):
            raise InvalidResource(f"{where}.allow: required, true or false")
        kind = entry.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise InvalidResource(f"{where}.type: {kind!r} is not a, b or c")
        numbers = []
        for key in ("major", "minor"):
            value = entry.get(key)
            if value is None:
                numbers.append(WILDCARD)
            elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
                numbers.append(value)
            else:
                raise InvalidResource(f"{where}.{key}: {value!r} is not a device number")
        access = entry.get("access")
        if access is None or access == "":
            access = "rwm"
        if not isinstance(access, str):
            raise InvalidResource(f"{where}.access: expected a string of r, w, m")
        try:
            access = normalize_access(access)
        except ValueError as error:
            raise InvalidResource(f"{where}.access: {error}") from None
        rules.append(DeviceRule(kind, numbers[0], numbers[1], access, allow))
    return rules


def effective_rules(spec_devices: object) -> list[DeviceRule]:
    """What a container gets, as in runc 1.1: the spec's rules, then the default
    allow-list (so a spec's deny-all first still leaves /dev/null & co. usable)."""
    return rules_from_spec(spec_devices) + list(DEFAULT_ALLOWED_DEVICES)


# --------------------------------------------------------------------------- emulator
_Key = tuple[str, int, int]  # (type, major, minor), never type "a"


def _sort_key(key: _Key) -> tuple[int, int, str]:
    # runc sorts by (major, minor, type); the wildcard (-1) comes first.
    kind, major, minor = key
    return (major, minor, kind)


class DeviceEmulator:
    """The state of a v1 devices cgroup: a default policy and its exceptions."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[_Key, str] = {}

    @classmethod
    def from_rules(cls, rules: list[DeviceRule]) -> "DeviceEmulator":
        """Start deny-all (runc's emulator zero value) and replay `rules` in order."""
        emulator = cls(default_allow=False)
        for rule in rules:
            emulator.apply(rule)
        return emulator

    @classmethod
    def from_list(cls, text: str) -> "DeviceEmulator":
        """The state a v1 `devices.list` shows. A black-list cgroup shows "a *:* rwm" and
        none of its deny exceptions, so it reads as allow-all (runc does the same and
        therefore always resets such a cgroup in `transition`)."""
        emulator = cls(default_allow=False)
        for line in text.splitlines():
            fields = line.replace(":", " ").split()
            if not fields:
                continue
            if len(fields) != 4:
                raise InvalidResource(f"malformed devices.list line {line!r}")
            kind, major, minor, access = fields
            if kind == "a":
                emulator.default_allow = True
                emulator.exceptions = {}
                continue
            rule = DeviceRule(kind, WILDCARD if major == "*" else int(major),
                              WILDCARD if minor == "*" else int(minor),
                              normalize_access(access), True)
            emulator.apply(rule)
        return emulator

    @property
    def is_allow_all(self) -> bool:
        return self.default_allow and not self.exceptions

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            # "a" resets everything, whatever its major/minor/access say (as v1 does).
            self.default_allow = rule.allow
            self.exceptions = {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            self._remove(key, rule)
        else:
            self.exceptions[key] = _union(self.exceptions.get(key, ""), rule.access)

    def _remove(self, key: _Key, rule: DeviceRule) -> None:
        kind, major, minor = key
        for partial in ((kind, WILDCARD, minor), (kind, major, WILDCARD),
                        (kind, WILDCARD, WILDCARD)):
            if partial == key:
                continue
            overlap = _intersection(self.exceptions.get(partial, ""), rule.access)
            if overlap:
                existing = DeviceRule(kind, partial[1], partial[2],
                                      self.exceptions[partial], not self.default_allow)
                raise InvalidResource(
                    f"device rule '{rule}' cannot punch a hole in the wildcard rule "
                    f"'{existing}' (cgroup v1 would silently ignore it); list the devices "
                    f"to {'allow' if not self.default_allow else 'deny'} individually")
        left = _difference(self.exceptions.get(key, ""), rule.access)
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def transition(self, target: "DeviceEmulator") -> list[DeviceRule]:
        """The v1 writes that turn this state into `target`, disrupting as little as
        possible: a reset ("a") only when the default policy changes or this cgroup is
        a black-list (whose deny exceptions cannot be read back)."""
        result: list[DeviceRule] = []
        old = self.exceptions
        if self.default_allow or self.default_allow != target.default_allow:
            result.append(DeviceRule("a", WILDCARD, WILDCARD, "rwm", target.default_allow))
            old = {}
        for key in sorted(old, key=_sort_key):
            dropped = _difference(old[key], target.exceptions.get(key, ""))
            if dropped:
                result.append(DeviceRule(key[0], key[1], key[2], dropped, target.default_allow))
        for key in sorted(target.exceptions, key=_sort_key):
            gained = _difference(target.exceptions[key], old.get(key, ""))
            if gained:
                result.append(DeviceRule(key[0], key[1], key[2], gained,
                                         not target.default_allow))
        return result

    def rules(self) -> list[DeviceRule]:
        """The minimal rule list from a deny-all cgroup to this state (runc's Rules()):
        an optional leading "allow a" then the exceptions, sorted."""
        return DeviceEmulator(default_allow=False).transition(self)

    def permits(self, kind: str, major: int, minor: int, access: str) -> bool:
        """Whether this state grants `access` on a device: what the v2 filter computes
        (used by tests and to explain a denial)."""
        for key, granted in self.exceptions.items():
            k, ma, mi = key
            if k != kind or (ma != WILDCARD and ma != major) or (mi != WILDCARD and mi != minor):
                continue
            if not _difference(access, granted):
                return not self.default_allow
        return self.default_allow

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, DeviceEmulator) and self.default_allow == other.default_allow
                and self.exceptions == other.exceptions)

    def __repr__(self) -> str:
        policy = "allow-all" if self.default_allow else "deny-all"
        return f"DeviceEmulator({policy}, {self.exceptions!r})"
