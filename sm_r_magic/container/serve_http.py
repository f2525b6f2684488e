"""HTTP/1.1 for the serving front (serve_front.py): one asyncio protocol per client connection (Python stdlib only).

A connection reads requests one at a time (pipelined requests wait their turn, so answers keep their order) and
hands each complete request to `app.handle(request)`; the app answers with `request.respond(...)`, at once or
later. Keep-alive by default for HTTP/1.1 (for HTTP/1.0 only when asked), `Connection: close` honoured; bodies by
Content-Length or chunked transfer coding; `Expect: 100-continue`; a body over the size limit is read and dropped
(not kept in memory) and answered 413, so the connection stays usable. Every response is one write, with
TCP_NODELAY, so no response waits for the peer's delayed ACK. When the client goes away (end of stream, reset)
while its request is queued or running, `app.abandon(request)` is called: only that client's answer is lost.
"""

import asyncio
import http
import socket

MAX_HEAD = 64 * 1024
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


class HttpError(Exception):
    """A request the connection answers itself (malformed, too large) and then closes unless keep is true."""

    def __init__(self, status, message, keep=False):
        super().__init__(message)
        self.status = status
        self.keep = keep


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive", "connection",
                 "started", "answered", "state")

    def __init__(self, connection, method, target, version, headers):
        self.connection = connection
        self.method = method
        self.target = target
        path, _, self.query = target.partition("?")
        self.path = path
        self.version = version
        self.headers = headers  # lower-case name -> value (repeated headers joined with ", ")
        self.body = b""
        connection_header = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in connection_header
        else:
            self.keep_alive = "close" not in connection_header
        self.started = 0.0
        self.answered = False
        self.state = None  # the app's bookkeeping

    @property
    def gone(self):
        return self.connection.gone

    def respond(self, status, body=b"", content_type="text/plain", extra_headers=(), close=False):
        """Send the response (once; later calls and calls after the client left do nothing)."""
        if self.answered:
            return
        self.answered = True
        self.connection.send_response(self, status, body, content_type, extra_headers, close)


def _parse_head(data):
    """(method, target, version, headers) from the request line and header lines, or HttpError."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes any byte; kept for clarity
        raise HttpError(400, "bad request head")
    lines = text.split("\n")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1]:
        raise HttpError(400, "bad request line")
    headers = {}
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return parts[0], parts[1], parts[2], headers


class HttpConnection(asyncio.Protocol):
    def __init__(self, app, max_body):
        self.app = app
        self.max_body = max_body
        self.transport = None
        self.buffer = bytearray()
        self.request = None        # the request being read or answered
        self.body_left = 0         # Content-Length bytes still to read
        self.chunked = None        # chunked decoding state: "size", "data", "data-end", "trailer"
        self.body_size = 0         # bytes of body seen (also when dropped)
        self.dropping = False      # body over the limit: count it, keep nothing
        self.waiting = False       # a complete request is with the app
        self.gone = False
        self.paused = False

    # -- asyncio callbacks -------------------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data):
        self.buffer += data
        if self.waiting:
            if len(self.buffer) > MAX_HEAD + self.max_body and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            return
        self._advance()

    def eof_received(self):
        # Like nginx: a client that closes its side while its request is pending has given up on the answer.
        self._lost()
        return False

    def connection_lost(self, exc):
        self._lost()

    def _lost(self):
        if self.gone:
            return
        self.gone = True
        if self.request is not None and self.waiting and not self.request.answered:
            self.app.abandon(self.request)

    # -- reading requests --------------------------------------------------------------------------------
    def _advance(self):
        try:
            while not self.waiting and not self.gone:
                if self.request is None and not self._read_head():
                    return
                if not self._read_body():
                    return
                self._complete()
        except HttpError as exc:
            self._refuse(exc)

    def _read_head(self):
        end = self.buffer.find(b"\r\n\r\n")
        size = 4
        if end < 0:
            end, size = self.buffer.find(b"\n\n"), 2
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise HttpError(431, "request head over 64 KB")
            return False
        if end > MAX_HEAD:
            raise HttpError(431, "request head over 64 KB")
        method, target, version, headers = _parse_head(bytes(self.buffer[:end]))
        del self.buffer[:end + size]
        self.request = Request(self, method, target, version, headers)
        self.request.started = asyncio.get_running_loop().time()
        self.body_size = 0
        self.dropping = False
        self.chunked = None
        self.body_left = 0
        body = bytearray()
        self.request.body = body
        coding = headers.get("transfer-encoding", "").lower()
        if coding:
            if "content-length" in headers or coding != "chunked":
                raise HttpError(400 if coding == "chunked" else 501, f"unsupported Transfer-Encoding: {coding}")
            self.chunked = "size"
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise HttpError(400, f"bad Content-Length: {length}")
            self.body_left = int(length)
            if self.body_left > self.max_body:
                self.dropping = True
                if "100-continue" in headers.get("expect", "").lower():
                    raise HttpError(413, self.app.too_large_message(self.body_left))
        if "100-continue" in headers.get("expect", "").lower() and (self.body_left or self.chunked):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _take(self, n):
        chunk = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.body_size += len(chunk)
        if self.body_size > self.max_body:
            self.dropping = True
        if not self.dropping:
            self.request.body += chunk

    def _read_body(self):
        """True when the whole body has been read."""
        if self.chunked is None:
            if self.body_left:
                n = min(self.body_left, len(self.buffer))
                self._take(n)
                self.body_left -= n
            return self.body_left == 0
        while True:
            if self.chunked in ("size", "data-end", "trailer"):
                end = self.buffer.find(b"\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        raise HttpError(400, "bad chunked body")
                    return False
                line = bytes(self.buffer[:end]).rstrip(b"\r")
                del self.buffer[:end + 1]
                if self.chunked == "size":
                    try:
                        self.body_left = int(line.split(b";")[0].strip(), 16)
                    except ValueError:
                        raise HttpError(400, "bad chunk size")
                    self.chunked = "data" if self.body_left else "trailer"
                elif self.chunked == "data-end":
                    if line:
                        raise HttpError(400, "bad chunked body")
                    self.chunked = "size"
                elif not line:  # the empty line after the trailers ends the body
                    self.chunked = None
                    return True
            else:
                n = min(self.body_left, len(self.buffer))
                self._take(n)
                self.body_left -= n
                if self.body_left:
                    return False
                self.chunked = "data-end"

    def _complete(self):
        request = self.request
        request.body = bytes(request.body)
        self.waiting = True
        if self.dropping:
            request.respond(413, self.app.too_large_message(self.body_size))
            return
        self.app.handle(request)

    def _refuse(self, exc):
        request = self.request
        if request is None:
            request = Request(self, "?", "/", "HTTP/1.1", {})
            self.request = request
        self.waiting = True
        request.respond(exc.status, str(exc) + "\n", close=not exc.keep)

    # -- writing responses -------------------------------------------------------------------------------
    def send_response(self, request, status, body, content_type, extra_headers, close):
        if self.gone or request is not self.request:
            return
        close = close or not request.keep_alive
        if isinstance(body, str):
            body = body.encode("utf-8")
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}"]
        for header in extra_headers:
            name = header.partition(":")[0].strip().lower()
            if name and name not in _HOP_BY_HOP and name != "content-type":
                lines.append(header)
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        self.transport.write(head + (b"" if request.method == "HEAD" else body))
        self.app.log_request(request, status)
        self.request = None
        self.waiting = False
        if close:
            self.gone = True
            self.transport.close()
            return
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.buffer:
            asyncio.get_running_loop().call_soon(self._advance)
