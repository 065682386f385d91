"""Run a command that the kernel kills when the process that started it ends, however it ends.

    python -I -S devstack/die_with_parent.py PARENT_PID [--userns UID | --user NAME] -- COMMAND [ARG...]

A tiny wrapper that every process of the launcher goes through (``command_for`` builds its
argv): it asks for ``PR_SET_PDEATHSIG`` = SIGKILL, checks that the parent is still the one that
started it (it may have died before the request took effect), then ``exec``s the command, which
keeps the same pid and the request. A launcher ended by SIGKILL, a crash or a lost terminal runs
no code of its own, so only the kernel can stop its servers then.

SIGKILL because it is the one signal that no server can ignore or hang on; each of ours survives
it: PostgreSQL (its backends notice their postmaster's death and exit) recovers from its WAL,
Redis's append-only file loses at most the last second of seat holds (the workflow takes them
again), and a payment attempt under way is retried by the next worker after its timeout.

The signal is sent when the parent *thread* ends: start children from the main thread.

``--userns UID`` first moves the command into a new user namespace in which UID stands for the
caller (root). PostgreSQL refuses to run as root; there it sees a non-root user, while every
file it touches is still root's, so it can enter root's own mode-700 directories. Nothing on the
machine changes: no chmod, no system user. It exits 125 when the kernel refuses the namespace.
``--user NAME`` (root only) becomes that user instead, where namespaces are refused.

Only the standard library, and run by path with ``-I -S`` so it starts in a few milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import sys

PR_SET_PDEATHSIG = 1
CLONE_NEWUSER = 0x10000000
NAMESPACE_REFUSED = 125


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter_user_namespace(uid: int) -> None:
    """Become UID in a new user namespace, mapped to our own uid and gid outside it."""
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    if _libc().unshare(CLONE_NEWUSER) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unshare(CLONE_NEWUSER): {os.strerror(error)}")
    with open("/proc/self/setgroups", "w") as setgroups:  # required before gid_map
        setgroups.write("deny")
    with open("/proc/self/uid_map", "w") as uid_map:
        uid_map.write(f"{uid} {outer_uid} 1")
    with open("/proc/self/gid_map", "w") as gid_map:
        gid_map.write(f"{uid} {outer_gid} 1")


def become(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def die_with(parent: int) -> None:
    if _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:  # the parent died before the request: do as the kernel would
        os._exit(128 + signal.SIGKILL)


def main(argv: list[str]) -> None:
    parent, rest = int(argv[0]), argv[1:]
    userns_uid, user = None, None
    if rest[:1] == ["--userns"]:
        userns_uid, rest = int(rest[1]), rest[2:]
    elif rest[:1] == ["--user"]:
        user, rest = rest[1], rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        sys.exit(__doc__)
    command = rest[1:]
    if userns_uid is not None:
        try:
            enter_user_namespace(userns_uid)
        except OSError as error:
            print(f"die_with_parent: no user namespace: {error}", file=sys.stderr)
            os._exit(NAMESPACE_REFUSED)
    if user is not None:
        become(user)
    # Last: a change of credentials clears the request.
    die_with(parent)
    os.execvp(command[0], command)  # noqa: S606 (the command is ours, with its own argv)


if __name__ == "__main__":
    main(sys.argv[1:])
