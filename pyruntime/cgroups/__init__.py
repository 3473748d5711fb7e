"""cgroups: place a container in its cgroup (v2 unified or v1 hierarchies), apply its
resource limits and device rules, freeze and thaw it, read its statistics and OOM kills,
signal and remove it. `placement` says where the cgroup is; `api` is the facade the
runtime calls; the other modules each implement one part of it. `systemd_scope` is the
placement of a cgroup that systemd owns (`--systemd-cgroup`: a transient unit made over
D-Bus by `systemd_dbus`, with the properties of `systemd_unit`)."""
