"""`exec --cgroup`: the placement of an exec'd process in an existing cgroup below its
container's, as runc 1.1 takes it.

`{"": PATH}` is PATH below the container's directory in every hierarchy (the only form on
a cgroup v2 host); `{CONTROLLER: PATH, ...}` moves only the v1 hierarchies with those
controllers (`name=systemd` names that hierarchy), the others keep the container's own.
PATH is relative to the container's cgroup even with a leading "/". The runtime never
makes a sub-cgroup (the container's cgroup manager does), and the process is never put
outside the container's cgroup.
"""
from __future__ import annotations

import os

from pyruntime.cgroups.errors import SubCgroupError
from pyruntime.cgroups.placement import CgroupPlacement


def sub_cgroup_placement(container: CgroupPlacement | None,
                         sub_paths: dict[str, str]) -> CgroupPlacement:
    """The container's placement with the directories `sub_paths` names instead; raises
    SubCgroupError before anything is changed."""
    if container is None or not container.paths:
        raise SubCgroupError("exec --cgroup: the container has no cgroup")
    paths = dict(container.paths)
    if "" in sub_paths:
        wanted = {key: sub_paths[""] for key in paths}
    else:
        wanted = {}
        for controller, sub in sub_paths.items():
            key = _hierarchy_of(paths, controller)
            if key is None:
                raise SubCgroupError(f"exec --cgroup: unknown controller {controller!r}: the "
                                     "container has no cgroup hierarchy with it")
            if wanted.get(key, sub) != sub:
                raise SubCgroupError(f"exec --cgroup: two different sub-cgroups for the "
                                     f"hierarchy {key}")
            wanted[key] = sub
    for key, sub in wanted.items():
        base = paths[key]
        path = os.path.normpath(os.path.join(base, sub.lstrip("/")))
        if os.path.commonpath([base, path]) != base:
            raise SubCgroupError(f"exec --cgroup: {sub} is not a sub-cgroup of the "
                                 f"container's cgroup {base}")
        if not os.path.isdir(path):
            raise SubCgroupError(f"exec --cgroup: the sub-cgroup {sub} does not exist: "
                                 f"{path}")
        paths[key] = path
    return CgroupPlacement(paths)


def _hierarchy_of(paths: dict[str, str], controller: str) -> str | None:
    for key in paths:
        if key == controller or (key and not key.startswith("name=")
                                 and controller in key.split(",")):
            return key
    return None
