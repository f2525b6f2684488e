"""HTTP to a serving container on 127.0.0.1 (local and docker endpoints): ping, the example input, invoke on a
kept-alive connection, free ports."""

import http.client
import socket
import threading

from ..predictor import InvocationError


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port, timeout=2):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def example(port, content_type, timeout=5):
    """The server's example request body (GET /prototype) in content_type, or None when it has none."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/prototype", headers={"Accept": content_type})
        response = conn.getresponse()
        body = response.read()
        return body.decode("utf-8", errors="replace") if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Connections:
    """One kept-alive connection per (endpoint, port, thread): SageMaker's front end keeps them alive too."""

    def __init__(self):
        self._local = threading.local()

    def _pool(self):
        if not hasattr(self._local, "pool"):
            self._local.pool = {}
        return self._local.pool

    def invoke(self, name, port, body, content_type, accept, timeout=70):
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = {"Content-Type": content_type, "Accept": accept or content_type}
        pool = self._pool()
        key = (name, port)
        for attempt in range(2):  # a kept-alive connection the server closed is retried once on a new one
            conn = pool.pop(key, None) or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt:
                    raise
                continue
            pool[key] = conn
            if response.status != 200:
                raise InvocationError(response.status, data.decode("utf-8", errors="replace"))
            return data, response.getheader("Content-Type")

    def close(self, name):
        pool = self._pool()
        for key in [k for k in pool if k[0] == name]:
            pool.pop(key).close()
