"""A lean HTTP/1.1 keep-alive client on asyncio streams, for the load benchmark's labelers.

With httpx the load benchmark's client took 2.6–2.9 ms of CPU per loop (two calls), with this
0.5 ms: at 200 loops/s that is 0.4-0.5 of a core left to the server under test.
This client does what the benchmark needs and nothing more: one connection, one request at a
time, JSON bodies, answers with a Content-Length (Django's CommonMiddleware sets it, in both
stacks measured), no redirects, no compression, no TLS, no proxies. A connection the server
closed is opened again for the next call (a call that found it closed fails, as it would in a
browser that was not told to retry).
"""

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    """A call that got no complete answer: refused, reset, closed early, timed out, garbled.
    `kind` names the underlying error (ConnectionRefusedError, TimeoutError, ...)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class Connection:
    """One keep-alive connection to `base_url` that sends `headers` with every request."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http://host:port URLs: {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        common = {"Host": parts.netloc, "Accept": "application/json", **headers}
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in common.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send one request (body as JSON when given); the answer's status and body."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        try:
            return await asyncio.wait_for(self._exchange(head.encode() + payload), self.timeout)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await self.aclose()  # whatever was half read is garbage: start the next call afresh
            raise HttpError(f"{method} {path}: {exc!r}", type(exc).__name__) from exc

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(request)
        await self._writer.drain()
        reader = self._reader
        status_line = await reader.readline()
        if not status_line:
            raise EOFError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise ValueError(f"not supported: Transfer-Encoding {headers['transfer-encoding']}")
        content = await reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, content

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
