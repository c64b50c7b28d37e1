"""A network delay on loopback: a TCP proxy that holds every byte for half a round trip
in each direction, in front of a real server (`git daemon`), for the benchmarks.

    with DelayProxy(target_port, rtt=0.1) as proxy:
        url = f"git://127.0.0.1:{proxy.port}/remote.git"

What it models: propagation delay, nothing else (no bandwidth limit, no loss). Data
from either side is delivered `rtt / 2` after the proxy read it, in order; a new
connection also pays the TCP handshake's round trip: the client's first bytes are
delivered `rtt` after it connected plus half a round trip, as they would arrive over a
real link (the client thinks it connected at once, so its data waits here instead).
An asyncio loop in a daemon thread, listening on 127.0.0.1 only; `close()` (or the end
of the `with` block) stops it and drops every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

CHUNK = 65536


class DelayProxy:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target_port` with `rtt` seconds of round
    trip (`rtt` may be changed while it runs; new bytes get the new delay)."""

    def __init__(self, target_port: int, rtt: float, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the delay proxy relays to loopback only")
        self.target = (host, target_port)
        self.rtt = rtt
        self.port = 0
        self.connections = 0  # accepted so far (to count round trips, if wanted)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def start(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the delay proxy did not start")
        return self

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        try:
            self._loop.run_until_complete(serve())
        finally:
            self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        loop = asyncio.get_running_loop()
        opened = loop.time() + self.rtt  # when a real client's handshake would be done
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]
            return
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, opened)),
            asyncio.ensure_future(self._pump(up_reader, writer, 0.0)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, not_before: float
    ) -> None:
        """Bytes read from `reader` are written to `writer` half a round trip later (and
        not before `not_before` plus that), in order; the end of input likewise."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:  # a reset or a cancel ends both directions (see `_handle`)
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                queue.put_nowait((max(loop.time(), not_before) + self.rtt / 2, data))
                if not data:
                    break
            await sender
        finally:
            if not sender.done():
                sender.cancel()
