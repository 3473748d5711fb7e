"""The prctl(2) calls the runtime makes on itself and on the processes it starts, through
python-prctl's compiled module `_prctl`.

python-prctl's Python layer (`import prctl`) builds a property object for every
capability and securebit as it is imported: about 1 ms on the test machines, on every
container start and exec, for calls that need none of it. Errors are python-prctl's:
OSError with the errno, ValueError for a capability it does not know.
"""
import _prctl


def set_dumpable(dumpable: bool) -> None:
    """PR_SET_DUMPABLE: off makes /proc/PID/* of this process root-owned and unopenable
    by other users of its namespaces (the CVE-2019-5736 class)."""
    _prctl.prctl(_prctl.PR_SET_DUMPABLE, int(dumpable))


def get_dumpable() -> bool:
    """PR_GET_DUMPABLE: False only for 0. python-prctl folds 2 (SUID_DUMP_ROOT, after a
    credential change with fs.suid_dumpable=2) into True, as it does 1."""
    return bool(_prctl.prctl(_prctl.PR_GET_DUMPABLE))


def set_keepcaps(keep: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across a setuid away from 0."""
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, int(keep))


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: one-way; execve can grant no more privileges."""
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def set_child_subreaper(subreaper: bool) -> None:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented to this process."""
    _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, int(subreaper))


def capbset_drop(cap: int) -> None:
    """PR_CAPBSET_DROP: remove `cap` from the bounding set (needs CAP_SETPCAP)."""
    _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
