"""R's parser kept warm: one long-lived R per Python process answers "does this code parse?" in about a
millisecond, instead of a cold Rscript's 150-300 ms per cell.

It starts with R_DEFAULT_PACKAGES=NULL (base only; parse() needs nothing else) when the extension loads (on the
warm processes' thread, warm_processes.py) or at the first check; the first check waits for R to be up. It only
ever parses, never evaluates, so reusing it is safe. Requests and answers are framed on its stdin and stdout:

    request:  10 ASCII digits (the byte length) + the code as UTF-8
    answer:   one line: the hex of R's parse error message as UTF-8 (an empty line: the code parses)

When it cannot start, dies or does not answer, check() says so (Unavailable) and rtools runs the cold check,
whose messages are the same. It ends when this process exits (atexit), or by itself when its stdin pipe reaches
end-of-file (this process was killed).
"""

import os
import select
import threading

from . import warm_processes

PARSER_R = r"""
con <- file("stdin", "rb")
repeat {
  header <- readBin(con, "raw", 10L)
  if (length(header) < 10L) break
  n <- as.integer(rawToChar(header))
  bytes <- if (n > 0L) readBin(con, "raw", n) else raw()
  lines <- readLines(rawConnection(bytes), warn = FALSE, encoding = "UTF-8")
  res <- tryCatch({ parse(text = lines, keep.source = FALSE); "" }, error = function(e) conditionMessage(e))
  cat(paste(as.character(charToRaw(enc2utf8(res))), collapse = ""), "\n", sep = "")
  flush(stdout())
}
"""

ANSWER_TIMEOUT = 30.0  # seconds; a parse of any real cell takes milliseconds
MAX_FAILURES = 3       # a parser that keeps dying is not started again in this process


class Unavailable(Exception):
    """No warm parser to ask: run the cold check."""


class WarmParser:
    def __init__(self, rscript):
        """Starts R (a few ms: R starts up while this returns; the first check waits for it)."""
        import subprocess

        self.rscript = rscript
        self._lock = threading.Lock()
        self.broken = False
        self.proc = None
        env = dict(os.environ, R_DEFAULT_PACKAGES="NULL")
        try:
            self.proc = warm_processes.start([rscript, "--no-init-file", "-e", PARSER_R], "parser", env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             start_new_session=True)  # a kernel interrupt (SIGINT) must not reach it
        except (OSError, RuntimeError):  # RuntimeError: this process is exiting (warm_processes.shutdown)
            self.broken = True

    def check(self, data):
        """R's parse error message for `data` (UTF-8 bytes), "" when it parses."""
        with self._lock:
            if self.broken:
                raise Unavailable("the warm R parser has ended")
            proc = self.proc
            try:
                proc.stdin.write(b"%010d" % len(data) + data)
                proc.stdin.flush()
                answer = self._read_line(proc)
            except (OSError, ValueError) as exc:
                self.broken = True
                warm_processes.end(proc)
                raise Unavailable(f"the warm R parser ended: {exc}") from None
        try:
            return bytes.fromhex(answer.decode("ascii").strip()).decode("utf-8", errors="replace")
        except ValueError:
            self.broken = True
            warm_processes.end(proc)
            raise Unavailable(f"the warm R parser answered {answer[:80]!r}") from None

    @staticmethod
    def _read_line(proc):
        ready, _, _ = select.select([proc.stdout], [], [], ANSWER_TIMEOUT)
        if not ready:
            raise OSError("no answer in time")
        line = proc.stdout.readline()
        if not line.endswith(b"\n"):
            raise OSError("it exited" if proc.poll() is not None else "a partial answer")
        return line

    def close(self):
        with self._lock:
            self.broken = True
            if self.proc is not None:
                warm_processes.end(self.proc)


_parser = None
_failures = 0
_lock = threading.Lock()


def start(rscript):
    """The warm parser for this Rscript (its full path), started in the background if it is not running."""
    global _parser, _failures
    with _lock:
        if _parser is not None and (_parser.broken or _parser.rscript != rscript):
            _failures += _parser.broken
            _parser.close()
            _parser = None
        if _parser is None and _failures < MAX_FAILURES:
            _parser = WarmParser(rscript)
        return _parser


def check(code, rscript):
    """R's parse error message for `code` ("" when it parses), from the warm parser; Unavailable when there is
    none to ask (warm processes are off, it cannot start, it died, or the code is not valid UTF-8)."""
    if not warm_processes.enabled():
        raise Unavailable("warm processes are off (RMagic.warm_processes)")
    try:
        data = code.encode("utf-8")
    except UnicodeEncodeError:
        raise Unavailable("the code is not valid UTF-8") from None
    parser = start(rscript)
    if parser is None:
        raise Unavailable("the warm R parser failed to start too often")
    try:
        return parser.check(data)
    except Unavailable:
        start(rscript)  # a new one for the next check, in the background
        raise


def stop():
    global _parser
    with _lock:
        if _parser is not None:
            _parser.close()
            _parser = None
