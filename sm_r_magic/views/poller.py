"""One background thread per kernel that keeps every live progress widget up to date.

Widgets register an object with a ``poll()`` method (returning True once it needs no more polling, e.g.
when its job has ended); the thread calls each registered object about every ``interval`` seconds and
drops it when it is done. The thread starts with the first registration and ends by itself when nothing
has been registered for a while, so an idle kernel has no extra thread.

Thread safety:
  * Every widget mutation (from this thread, from the foreground ``watch()`` loop, from button click
    handlers) happens under ``UI_LOCK``, so a refresh never interleaves with a click.
  * Comm messages sent from this thread must carry a parent header. ipykernel 7 keeps the parent in
    ContextVars that a new thread does not inherit (ipywidgets#4020, ipykernel#1450); while polling we set
    the *thread's* parent to the kernel's latest request (the running cell, or the last one), with
    ipykernel's own thread-local setters. Nothing global is changed, so output routing of the cell
    that runs on the main thread is untouched. Tagging updates with the running cell's header also lets
    nbclient record widget updates made while a later cell runs.
"""

import contextlib
import contextvars
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

UI_LOCK = threading.RLock()
IDLE_EXIT_SECONDS = 5.0


def _shell():
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


@contextlib.contextmanager
def kernel_thread_parent():
    """Within this block, messages sent from the current (non-main) thread carry the parent header of
    the kernel's latest request. A no-op outside a kernel."""
    shell = _shell()
    kernel = getattr(shell, "kernel", None)
    if shell is None or kernel is None or threading.current_thread() is threading.main_thread():
        yield
        return
    undo = []
    try:
        parent = shell.get_parent() if hasattr(shell, "get_parent") else getattr(shell, "parent_header", {})
        if parent:
            if hasattr(shell, "set_thread_parent"):  # ipykernel >= 7: display, stdout, stderr
                tokens = shell.set_thread_parent(parent)
                undo.append(lambda: shell.reset_thread_parent(tokens))
            var = getattr(kernel, "_shell_parent", None)  # ipykernel >= 7: what Comm.publish_msg reads
            if isinstance(var, contextvars.ContextVar):
                token = var.set(parent)
                undo.append(lambda: var.reset(token))
    except Exception:  # never let routing trouble stop the updates
        log.debug("could not set the thread's parent header", exc_info=True)
    try:
        yield
    finally:
        for action in reversed(undo):
            try:
                action()
            except Exception:  # pragma: no cover
                log.debug("could not reset the thread's parent header", exc_info=True)


class Poller:
    """The per-process (per-kernel) poller. Use ``POLLER`` (module level); ``register(item)``."""

    def __init__(self, interval=0.5):
        self.interval = interval
        self._lock = threading.Lock()
        self._items = []
        self._wake = threading.Event()
        self._thread = None
        self._errors = {}

    # -- registration ------------------------------------------------------------------------------------
    def register(self, item):
        with self._lock:
            if not any(existing is item for existing in self._items):
                self._items.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sm-r-magic-poller", daemon=True)
                self._thread.start()
        self._wake.set()
        return item

    def unregister(self, item):
        with self._lock:
            self._items = [existing for existing in self._items if existing is not item]
            self._errors.pop(id(item), None)

    def registered(self, item):
        with self._lock:
            return any(existing is item for existing in self._items)

    @property
    def items(self):
        with self._lock:
            return list(self._items)

    @property
    def thread(self):
        return self._thread

    def wait_idle(self, timeout=30.0):
        """Block until nothing is registered (tests; or a script that wants the final state)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.items:
                return True
            time.sleep(0.05)
        return False

    # -- the thread --------------------------------------------------------------------------------------
    def poll_once(self):
        """One round over every registered item (also callable from the foreground)."""
        for item in self.items:
            try:
                with kernel_thread_parent():
                    done = item.poll()
                self._errors.pop(id(item), None)
            except Exception:
                count = self._errors.get(id(item), 0) + 1
                self._errors[id(item)] = count
                log.warning("sm-r-magic: refreshing %r failed (%d)", item, count, exc_info=count == 1)
                done = count >= 5  # a persistently failing item stops being polled
            if done:
                self.unregister(item)

    def _run(self):
        idle_since = None
        while True:
            self._wake.clear()
            if self.items:
                idle_since = None
                self.poll_once()
            else:
                idle_since = idle_since or time.monotonic()
                with self._lock:
                    if not self._items and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                        self._thread = None
                        return
            self._wake.wait(self.interval)


POLLER = Poller()
