"""OCI bundles for the integration tests: `make_bundle(dir, rootfs, args, **changes)` writes
`dir/config.json` from the config `runc spec` writes (with `process.terminal` false) plus
the changes a test asks for, and returns `dir`.

The rootfs is shared by every test and never written: bundles point `root.path` at it
(absolute) with `root.readonly` true. A test that needs a writable place mounts a tmpfs
(`tmpfs_mount("/tmp")`), or copies the rootfs. Mount destinations that do not exist in
the rootfs are made by the runtime *in the rootfs*, so put them under a tmpfs mount
(`/tmp`, `/run`) rather than at new top-level paths of the shared tree.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

from pyruntime.oci.spec_defaults import default_spec

CAPABILITY_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def base_config() -> dict[str, Any]:
    """A fresh copy of the `runc spec` config (terminal false). `pyruntime spec` writes
    the same document but for the hostname (tests/unit/test_spec_defaults.py compares it
    with runc's own output), so it is taken from there."""
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["hostname"] = "runc"
    return spec


# --------------------------------------------------------------------------- pieces
def bind_mount(source: str, destination: str, *options: str) -> dict[str, Any]:
    """A bind mount; options default to ["rbind"] (add "ro", "bind", "nosuid", ...)."""
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": list(options) or ["rbind"]}


def tmpfs_mount(destination: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs",
            "options": list(options) or ["nosuid", "nodev", "mode=1777"]}


def hook(script: str, *, path: str = "/bin/sh", timeout: int | None = None,
         env: Iterable[str] | None = None) -> dict[str, Any]:
    """An OCI hook that runs `sh -c script` (with `path` as the shell)."""
    entry: dict[str, Any] = {"path": path, "args": ["sh", "-c", script]}
    if timeout is not None:
        entry["timeout"] = timeout
    if env is not None:
        entry["env"] = list(env)
    return entry


def id_mapping(container_id: int, host_id: int, size: int) -> dict[str, int]:
    return {"containerID": container_id, "hostID": host_id, "size": size}


# --------------------------------------------------------------------------- the bundle
def make_bundle(directory, rootfs, args: Iterable[str], *,
                readonly_root: bool = True,
                env: list[str] | dict[str, str] | None = None,
                cwd: str | None = None,
                user: int | str | dict | None = None,
                additional_gids: Iterable[int] | None = None,
                umask: int | None = None,
                capabilities: list[str] | dict[str, list[str]] | None = None,
                no_new_privileges: bool | None = None,
                rlimits: list[dict] | dict[str, tuple[int, int]] | None = None,
                terminal: bool | None = None,
                console_size: tuple[int, int] | None = None,
                mounts: Iterable[dict] = (),
                namespaces: Iterable[str | dict] | None = None,
                namespace_paths: dict[str, str] | None = None,
                drop_namespaces: Iterable[str] = (),
                uid_mappings: Iterable[dict | tuple] | None = None,
                gid_mappings: Iterable[dict | tuple] | None = None,
                hooks: dict[str, list[dict]] | None = None,
                seccomp: dict | None = None,
                hostname: str | None = None,
                domainname: str | None = None,
                masked_paths: Iterable[str] | None = None,
                readonly_paths: Iterable[str] | None = None,
                devices: Iterable[dict] | None = None,
                sysctl: dict[str, str] | None = None,
                annotations: dict[str, str] | None = None,
                mutate: Callable[[dict], dict | None] | None = None) -> str:
    """Write `directory/config.json` and return `directory` (a str).

    - `env`: a list replaces process.env; a dict is added to the default env (PATH, TERM).
    - `user`: a uid (gid the same), "uid:gid", or a whole process.user dict;
      `additional_gids` and `umask` go into process.user.
    - `capabilities`: a list is put in bounding, effective, permitted and ambient (the shape
      `runc spec` writes); a dict replaces process.capabilities as given.
    - `rlimits`: a list replaces process.rlimits; a dict maps "RLIMIT_X" to (soft, hard).
    - `mounts` are appended to the default ones.
    - `namespaces` replaces linux.namespaces (items: a type or a {"type", "path"} dict);
      `namespace_paths` sets the path of a type (adding it if missing); `drop_namespaces`
      removes types.
    - `uid_mappings`/`gid_mappings`: dicts or (containerID, hostID, size); they add a user
      namespace when the config has none.
    - `mutate(config)` runs last; it may change the dict in place or return a new one.
    """
    config = base_config()
    process = config["process"]
    linux = config["linux"]
    process["args"] = [str(a) for a in args]
    config["root"] = {"path": os.path.abspath(str(rootfs)), "readonly": readonly_root}

    if env is not None:
        if isinstance(env, dict):
            process["env"] = process["env"] + [f"{k}={v}" for k, v in env.items()]
        else:
            process["env"] = list(env)
    if cwd is not None:
        process["cwd"] = cwd
    if user is not None:
        if isinstance(user, dict):
            process["user"] = dict(user)
        elif isinstance(user, int):
            process["user"] = {"uid": user, "gid": user}
        else:
            uid, _, gid = str(user).partition(":")
            process["user"] = {"uid": int(uid), "gid": int(gid or uid)}
    if additional_gids is not None:
        process["user"]["additionalGids"] = list(additional_gids)
    if umask is not None:
        process["user"]["umask"] = umask
    if capabilities is not None:
        if isinstance(capabilities, dict):
            unknown = set(capabilities) - set(CAPABILITY_SETS)
            assert not unknown, f"unknown capability sets {unknown}"
            process["capabilities"] = {k: list(v) for k, v in capabilities.items()}
        else:
            process["capabilities"] = {s: list(capabilities)
                                       for s in ("bounding", "effective", "permitted", "ambient")}
    if no_new_privileges is not None:
        process["noNewPrivileges"] = no_new_privileges
    if rlimits is not None:
        if isinstance(rlimits, dict):
            process["rlimits"] = [{"type": t, "soft": s, "hard": h}
                                  for t, (s, h) in rlimits.items()]
        else:
            process["rlimits"] = list(rlimits)
    if terminal is not None:
        process["terminal"] = terminal
    if console_size is not None:
        process["consoleSize"] = {"height": console_size[0], "width": console_size[1]}

    config["mounts"].extend(dict(m) for m in mounts)

    if namespaces is not None:
        linux["namespaces"] = [n if isinstance(n, dict) else {"type": n} for n in namespaces]
    for kind in drop_namespaces:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != kind]
    for kind, path in (namespace_paths or {}).items():
        for n in linux["namespaces"]:
            if n["type"] == kind:
                n["path"] = path
                break
        else:
            linux["namespaces"].append({"type": kind, "path": path})
    for key, mappings in (("uidMappings", uid_mappings), ("gidMappings", gid_mappings)):
        if mappings is None:
            continue
        linux[key] = [m if isinstance(m, dict) else id_mapping(*m) for m in mappings]
        if not any(n["type"] == "user" for n in linux["namespaces"]):
            linux["namespaces"].append({"type": "user"})

    if hooks is not None:
        config["hooks"] = {k: list(v) for k, v in hooks.items()}
    if seccomp is not None:
        linux["seccomp"] = seccomp
    if hostname is not None:
        config["hostname"] = hostname
    if domainname is not None:
        config["domainname"] = domainname
    if masked_paths is not None:
        linux["maskedPaths"] = list(masked_paths)
    if readonly_paths is not None:
        linux["readonlyPaths"] = list(readonly_paths)
    if devices is not None:
        linux["devices"] = list(devices)
    if sysctl is not None:
        linux["sysctl"] = dict(sysctl)
    if annotations is not None:
        config["annotations"] = dict(annotations)

    if mutate is not None:
        changed = mutate(config)
        if changed is not None:
            config = changed

    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return directory


def read_config(directory) -> dict[str, Any]:
    with open(os.path.join(str(directory), "config.json")) as f:
        return json.load(f)
