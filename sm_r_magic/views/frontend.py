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


def request_id():
    """The request (cell execution) being handled now, so a cell shows a view or a summary once."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        return None
    if shell is None:
        return None
    parent = shell.get_parent() if hasattr(shell, "get_parent") else {}
    msg_id = ((parent or {}).get("header") or {}).get("msg_id")
    return msg_id or ("execution", getattr(shell, "execution_count", None))
