"""Small process and file helpers the folder backends share: is a pid alive, new whole lines of a growing log,
and a child that dies with its parent."""

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)  # loaded now, before any fork: preexec_fn must not load libraries
except OSError:
    _LIBC = None


def pid_alive(pid):
    """True for a running (not zombie) process; a process we may not signal counts as alive."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_new_lines(path, cursor=None):
    """Whole new lines of a growing log file since byte offset `cursor` -> (lines, new cursor)."""
    offset = cursor or 0
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
    if not end:
        return [], offset
    return data[:end].decode("utf-8", errors="replace").splitlines(), offset + end


def parent_death_signal(sig):
    """Have Linux send `sig` to this process when its parent dies, even by SIGKILL (0: no longer); it survives
    an exec."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def die_with_parent(sig=signal.SIGTERM):
    """For preexec_fn: the child gets `sig` when its parent dies."""
    parent_death_signal(sig)
