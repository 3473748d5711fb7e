#!/bin/sh
# /init of the cgroup-v2 test VM (built into the initramfs by build_boot_files.py; run by
# the initramfs's static busybox). Two stages:
#
# stage 1 (PID 1 in the initramfs): load the virtio/9p/overlay modules, mount the host's
#   root (9p tag "hostroot", read-only) under a tmpfs overlay at /newroot, move /dev /proc
#   /sys into it, put this script and busybox in /newroot/run/vm, and switch_root (not
#   chroot: a chrooted process cannot create user namespaces) into stage 2.
# stage 2 (PID 1 in the host's root): mount cgroup2 with every controller enabled for
#   children, the results share (9p tag "results") on /run/vm/results, set the clock,
#   hostname and loopback, run /run/vm/results/command.sh (written by runner.py) with its
#   output in /run/vm/results/output and its exit code in /run/vm/results/exit_code, then
#   power off.
# With `pyruntime.systemd=1` on the kernel command line (runner.py --systemd), stage 2
#   does the same set-up except cgroup2 (systemd mounts it), installs the units of
#   /run/vm/systemd (pyruntime-vm.target, pyruntime-vm-command.service, dbus drop-ins),
#   disables every generator, and execs /lib/systemd/systemd as PID 1 with
#   --unit=pyruntime-vm.target. The command service runs `init.sh command` (the same
#   run_command as stage 2) and powers off when it ends.
#
# A fatal error prints "pyruntime-vm: FATAL: ..." on the console (ttyS0) and powers off;
# the runner shows the console log when no exit code came back.

bb=/bin/busybox
[ "${1:-}" = stage2 ] && bb=/run/vm/busybox

say() { echo "pyruntime-vm: $*" >/dev/console 2>/dev/null || echo "pyruntime-vm: $*"; }
power_off() {
    $bb sync
    $bb poweroff -f
    echo o > /proc/sysrq-trigger
    # Still here: returning from PID 1 panics, and panic=-1 + -no-reboot ends qemu.
    exit 1
}
die() { say "FATAL: $*"; power_off; }

stage1() {
    export PATH=/bin
    $bb mount -t devtmpfs devtmpfs /dev || die "mount devtmpfs"
    $bb mount -t proc proc /proc || die "mount proc"
    $bb mount -t sysfs sysfs /sys || die "mount sysfs"
    . /etc/vm.conf
    for m in $MODULES; do
        $bb insmod "/lib/modules/$m.ko" || die "insmod $m"
    done

    $bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose \
        hostroot /host || die "mount the host root (9p tag hostroot)"
    $bb mount -t tmpfs -o mode=0755 tmpfs /rw || die "mount tmpfs /rw"
    $bb mkdir -p /rw/upper /rw/work
    $bb mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work \
        overlay /newroot || die "mount the overlay on /newroot"

    for d in dev proc sys; do
        $bb mount --move "/$d" "/newroot/$d" || die "move /$d into the new root"
    done
    $bb mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || die "mount /run"
    $bb mkdir -p /newroot/run/vm/results
    $bb cp /init /newroot/run/vm/init.sh
    $bb cp /bin/busybox /newroot/run/vm/busybox
    $bb cp /etc/vm.conf /newroot/run/vm/vm.conf
    $bb cp -r /etc/vm-systemd /newroot/run/vm/systemd
    exec $bb switch_root /newroot /run/vm/busybox sh /run/vm/init.sh stage2
    die "switch_root failed"
}

stage2() {
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    . /run/vm/vm.conf
    cd /

    $bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp || die "mount /tmp"
    $bb mkdir -p /dev/pts /dev/shm
    $bb mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts \
        || die "mount devpts"
    $bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || die "mount /dev/shm"
    $bb mkdir -p /dev/mqueue && $bb mount -t mqueue mqueue /dev/mqueue
    $bb ln -sfn /proc/self/fd /dev/fd
    $bb ln -sfn /proc/self/fd/0 /dev/stdin
    $bb ln -sfn /proc/self/fd/1 /dev/stdout
    $bb ln -sfn /proc/self/fd/2 /dev/stderr

    systemd=0
    for word in $($bb cat /proc/cmdline); do
        [ "$word" = pyruntime.systemd=1 ] && systemd=1
    done
    if [ $systemd = 0 ]; then
        # cgroup v2, every controller delegated to children of the root cgroup. (systemd
        # mounts it itself, and enables controllers as its units ask for them.)
        $bb mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup \
            || $bb mount -t cgroup2 cgroup2 /sys/fs/cgroup || die "mount cgroup2"
        for c in $($bb cat /sys/fs/cgroup/cgroup.controllers); do
            echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || say "cannot enable controller $c"
        done
    fi

    # The VM kernel's modules, so that modprobe (and the kernel's auto-loading) works.
    if [ -d "$HOST_MODULES_DIR" ]; then
        $bb mkdir -p "/lib/modules/$KVER" && $bb mount --bind "$HOST_MODULES_DIR" "/lib/modules/$KVER"
    fi

    $bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /run/vm/results \
        || die "mount the results share (9p tag results)"

    # The clock: the host passes its time; the RTC usually agrees, never go back.
    for word in $($bb cat /proc/cmdline); do
        case "$word" in
            pyruntime.epoch=*)
                epoch=${word#pyruntime.epoch=}
                [ "$($bb date +%s)" -lt "$epoch" ] && $bb date -s "@$epoch" >/dev/null ;;
        esac
    done
    $bb hostname pyruntime-vm
    $bb ip link set lo up || say "cannot bring lo up"
    echo 1 > /proc/sys/kernel/sysrq 2>/dev/null

    if [ $systemd = 1 ]; then
        start_systemd
    fi
    run_command
    power_off
}

# Stage 2 with systemd: the units, no generators (fstab, getty, sysv... are not wanted and
# cost seconds under emulation), the hostname systemd reads, and systemd as PID 1.
start_systemd() {
    units=/etc/systemd/system
    $bb cp /run/vm/systemd/pyruntime-vm.target /run/vm/systemd/pyruntime-vm-command.service \
        "$units/" || die "install the VM's systemd units"
    for unit in dbus.socket dbus.service; do
        $bb mkdir -p "$units/$unit.d"
        $bb cp /run/vm/systemd/dbus.conf "$units/$unit.d/pyruntime-vm.conf"
    done
    $bb mkdir -p /etc/systemd/system-generators
    for generator in /lib/systemd/system-generators/*; do
        $bb ln -sfn /dev/null "/etc/systemd/system-generators/${generator##*/}"
    done
    echo pyruntime-vm > /etc/hostname
    exec /lib/systemd/systemd --unit=pyruntime-vm.target
    die "exec /lib/systemd/systemd failed"
}

# The command, in stage 2 or (systemd) in pyruntime-vm-command.service.
run_command() {
    if [ -f /run/vm/results/command.sh ]; then
        $bb env -i \
            PATH="$PATH" HOME=/root USER=root LOGNAME=root SHELL=/bin/sh TERM=dumb \
            LANG=C.UTF-8 HOSTNAME=pyruntime-vm PYRUNTIME_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 \
            $bb sh /run/vm/results/command.sh </dev/null >/run/vm/results/output 2>&1
        echo $? > /run/vm/results/exit_code.tmp
        $bb mv /run/vm/results/exit_code.tmp /run/vm/results/exit_code
    else
        say "no /run/vm/results/command.sh: nothing to run"
    fi
}

case "${1:-}" in
    stage2) stage2 ;;
    command)
        bb=/run/vm/busybox
        export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        cd / && run_command ;;
    *) stage1 ;;
esac
