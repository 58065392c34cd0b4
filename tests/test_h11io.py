"""h11 on asyncio streams: a kept connection is clean only when nothing more arrived, then or while idle."""

from __future__ import annotations

import asyncio

import h11

from telegraf_llm_input import h11io


async def exchange(answer: bytes, later: bytes = b"") -> tuple[bool, int, int]:
    """One GET to a server that writes `answer` (then `later`, after a pause): (clean after the answer, bytes
    unread after the pause, bytes arrived in all)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(answer)
        await asyncio.sleep(0.05)
        writer.write(later)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    reader, writer = await h11io.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    conn = h11.Connection(h11.CLIENT)
    h11io.send(conn, writer, h11.Request(method="GET", target="/", headers=[("Host", "x")]), h11.EndOfMessage())
    while not isinstance(await h11io.receive(conn, reader), h11.EndOfMessage):
        pass
    ok = h11io.clean(conn, reader)
    await asyncio.sleep(0.2)
    writer.close()
    server.close()
    return ok, reader.unread, reader.arrived


def test_clean_only_when_nothing_more_arrived():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert asyncio.run(exchange(ok)) == (True, 0, len(ok))
    assert asyncio.run(exchange(ok + ok))[0] is False  # a second answer in the same segment
    assert asyncio.run(exchange(ok, later=ok)) == (True, len(ok), 2 * len(ok))  # arrived while idle: unread
    assert asyncio.run(exchange(ok.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n")))[0] is False
