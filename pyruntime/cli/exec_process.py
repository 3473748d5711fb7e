"""The process `exec` runs: from `--process FILE`, or the container's own process with
runc's flags applied on top (args, --env, --cwd, --user, -g, --cap, --tty,
--no-new-privs); and where it goes, from `--cgroup`."""
from __future__ import annotations

from pyruntime.cli.args import UsageError


def process_from_flags(parsed, config: dict) -> dict:
    if parsed.process:
        from pyruntime import jsonlite
        from pyruntime.oci.errors import SpecError
        from pyruntime.oci.spec import validate_process

        try:
            with open(parsed.process, "rb") as f:
                raw = jsonlite.loads(f.read())
        except OSError as error:
            raise UsageError(f"--process {parsed.process}: {error.strerror}") from None
        except ValueError as error:
            raise SpecError("process", f"{parsed.process}: invalid JSON: {error}") from None
        return validate_process(raw)
    if len(parsed.args) < 2:
        raise UsageError("exec: a command is required (or --process)")
    base = config["process"]
    process = dict(base)
    process["args"] = parsed.args[1:]
    process["terminal"] = parsed.tty
    process["consoleSize"] = None
    env = {}
    for item in list(base.get("env", [])) + parsed.env:
        key, _, value = item.partition("=")
        env[key] = value
    process["env"] = [f"{key}={value}" for key, value in env.items()]
    if parsed.cwd:
        process["cwd"] = parsed.cwd
    user = dict(base.get("user", {}))
    if parsed.user:
        uid, _, gid = parsed.user.partition(":")
        try:
            user["uid"] = int(uid)
            user["gid"] = int(gid) if gid else user.get("gid", 0)
        except ValueError:
            raise UsageError(f"--user {parsed.user!r}: expected UID[:GID] as numbers") from None
    if parsed.additional_gids:
        # Added to the container's own, as runc does, not instead of them.
        try:
            added = [int(g) for g in parsed.additional_gids]
        except ValueError:
            raise UsageError("--additional-gids: expected numbers") from None
        if any(gid < 0 for gid in added):
            raise UsageError("--additional-gids: gids must not be negative")
        user["additionalGids"] = [*user.get("additionalGids", []), *added]
    process["user"] = user
    if parsed.cap:
        from pyruntime.linux.capability_names import CAPABILITIES

        capabilities = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for name in parsed.cap:
            name = name.upper() if name.upper().startswith("CAP_") else f"CAP_{name.upper()}"
            if name not in CAPABILITIES:
                raise UsageError(f"--cap: unknown capability {name}")
            # As runc: ambient needs inheritable, which --cap does not grant.
            for kind in ("bounding", "effective", "permitted"):
                capabilities.setdefault(kind, [])
                if name not in capabilities[kind]:
                    capabilities[kind].append(name)
        process["capabilities"] = capabilities
    if parsed.no_new_privs:
        process["noNewPrivileges"] = True
    if parsed.apparmor or parsed.process_label:
        raise UsageError("--apparmor/--process-label: no LSM support in this runtime")
    return process


def sub_cgroups_from_flags(values: list[str]) -> dict[str, str] | None:
    """`--cgroup` as runc 1.1 reads it: one `PATH` for every hierarchy, or any number of
    `CONTROLLER[,CONTROLLER...]:PATH` (pyruntime.cgroups.sub_cgroup places the process)."""
    if not values:
        return None
    paths: dict[str, str] = {}
    for value in values:
        parts = value.split(":")
        if len(parts) > 2:
            raise UsageError(f"invalid --cgroup argument: {value}")
        if len(parts) == 1:
            if len(values) != 1:
                raise UsageError(f"invalid --cgroup argument: {value} (missing "
                                 "<controller>: prefix)")
            paths[""] = value
            continue
        controllers, path = parts
        for controller in controllers.split(","):
            if not controller:
                raise UsageError(f"invalid --cgroup argument: {value} (empty controller "
                                 "name)")
            paths[controller] = path
    return paths
