"""The one way tests wait: for a condition, bounded and generous, never a fixed sleep. A slow or loaded machine
makes a test take longer, never fail."""

import time


def wait_for(condition, timeout=30, what="the condition", interval=0.05):
    """Poll `condition()` until it is true; return its value, or fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
