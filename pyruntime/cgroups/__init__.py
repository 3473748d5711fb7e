"""cgroups: place a container in its cgroup (v2 unified or v1 hierarchies), list and
signal its processes, and remove it. Resource limits, stats, OOM events and freezing are
added by the cgroup issue on top of the same interface."""
