"""The one way tests wait: for a condition, bounded and generous, never a fixed sleep. A slow or loaded machine
makes a test take longer, never fail."""

import time


def wait_until(condition, timeout=30, interval=0.05):
    """Poll `condition()` until it is true or `timeout` seconds passed; return its last value (for assertions
    with a message of their own)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_for(condition, timeout=30, what="the condition", interval=0.05):
    """Poll `condition()` until it is true; return its value, or fail naming `what` after `timeout` seconds."""
    value = wait_until(condition, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value
