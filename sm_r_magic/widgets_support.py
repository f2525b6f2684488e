"""Is there a widget frontend? Decided without importing ipywidgets where there cannot be one."""

import sys


def has_widget_frontend():
    if "ipykernel" not in sys.modules:
        return False  # terminal IPython or plain Python
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    if shell is None or not hasattr(shell, "kernel"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
