"""Runs inside the sandbox (Python 3.11, stdlib only but for state): the program's side of the tool channel.

The API passes one end of a private socket pair into the jail (its number in CODEAPI_TOOL_FD).
Frames both ways are a 4-byte big-endian length and UTF-8 JSON. The driver sends one batch at a
time, ``{"calls": [{"name", "input"}]}``, and waits for ``{"results": [{"ok", "value"|"error"}]}``
in the same order; calls made while a batch is out wait for the next one.

``inline`` (Python): the user's code runs in this process with top-level await; every tool is an async function
taking keyword arguments, and ``asyncio`` and ``json`` are pre-imported. The session's variables
are restored and saved with the warm REPL's own functions (codeapi.repl.server, bound read-only). Calls that start in the
same turn of the event loop (``asyncio.gather``) travel in one batch.

``script`` (bash): the user's script runs as a child; each tool is a bash function (see script.py) that
writes its JSON argument to a file and a request line to a pipe, then blocks on a FIFO until this
driver writes the result next to it. Requests arriving within a short quiet window form one batch.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import errno
import inspect
import json
import os
import socket
import struct
import subprocess
import sys
import traceback
from typing import Any

HEADER = struct.Struct(">I")
BASH_QUIET_S = 0.02  # a batch closes once no bash call arrived for this long
STATE_IN = "/code/state.bin"  # the session's saved variables, when there are any
STATE_OUT = "/home/sandbox/.codeapi-state"  # read by the API once the program has ended
LIBRARY = "/opt/codeapi-lib"  # the API's own package, read-only, for the state format
FIFO_WAIT_S = 5.0  # a bash caller opens its FIFO right after its request; one that never does is gone
INLINE, SCRIPT = "inline", "script"  # the modes (argv[1]): the program in this process, or a bash child


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for stream in (sys.stdout, sys.stderr):  # what the program printed shows with this pause
            with contextlib.suppress(OSError, ValueError):  # the program may have closed or broken it
                stream.flush()
        payload = json.dumps({"calls": calls}, separators=(",", ":")).encode()
        self.writer.write(HEADER.pack(len(payload)) + payload)
        await self.writer.drain()
        size = HEADER.unpack(await self.reader.readexactly(HEADER.size))[0]
        results: list[dict[str, Any]] = json.loads(await self.reader.readexactly(size))["results"]
        return results


class Batcher:
    """Collects calls until the event loop has run every task that was ready, then sends them."""

    def __init__(self, channel: Channel, settle_s: float = 0.0) -> None:
        self.channel = channel
        self.settle_s = settle_s
        self.pending: list[tuple[str, Any, asyncio.Future[Any]]] = []
        self.busy = False

    def submit(self, name: str, arguments: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((name, arguments, future))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self.flush())
        return future

    async def flush(self) -> None:
        while self.pending:
            seen = -1
            while seen != len(self.pending):  # let every ready task make its call first
                seen = len(self.pending)
                await asyncio.sleep(self.settle_s)
            batch, self.pending = self.pending, []
            try:
                results = await self.channel.exchange([{"name": name, "input": args} for name, args, _ in batch])
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
                os._exit(70)  # the API is gone or answered nonsense: nothing can continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if result.get("ok"):
                    future.set_result(result.get("value"))
                else:
                    future.set_exception(RuntimeError(str(result.get("error") or "Tool execution failed")))
        self.busy = False


def python_tool(batcher: Batcher, identifier: str, name: str) -> Any:
    async def tool(*args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(f"{identifier}() takes keyword arguments only")
        json.dumps(kwargs)  # refuse what cannot travel, here, with the user's own traceback
        return await batcher.submit(name, kwargs)

    tool.__name__ = tool.__qualname__ = identifier
    return tool


async def run_python(channel: Channel, tools: list[list[str]], source: str) -> int:
    batcher = Batcher(channel)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    save = os.environ.pop("CODEAPI_STATE_SAVE", "never")
    if save != "never" and os.path.exists(STATE_IN):
        restore_state(namespace)
    # The tools and the pre-imported modules win over saved names, and are not saved themselves.
    given: dict[str, Any] = {"asyncio": asyncio, "json": json}
    given.update({identifier: python_tool(batcher, identifier, name) for identifier, name in tools})
    namespace.update(given)
    status = await run_user_code(namespace, source)
    if save == "always" or (save == "success" and status == 0):
        save_state({name: value for name, value in namespace.items() if given.get(name, given) is not value})
    return status


def restore_state(namespace: dict[str, Any]) -> None:
    """The session's variables as the warm REPL saved them (its own functions read and write them)."""
    from codeapi.repl import server  # noqa: PLC0415 - bound into the jail only when state is kept

    with open(STATE_IN, "rb") as handle:
        blob = handle.read()
    try:
        namespace.update(server.cloudpickle.loads(server.decompress(blob)))
    except Exception as error:  # noqa: BLE001 - unpickling runs arbitrary __setstate__ code
        sys.stderr.write(f"Could not restore the session's variables: {type(error).__name__}: {error}\n")


def save_state(names: dict[str, Any]) -> None:
    """The program's variables for the session's next call: ``raw size`` (8 bytes) + the REPL's blob."""
    from codeapi.repl import server  # noqa: PLC0415 - see restore_state

    raw, skipped = server.serialise(names)
    if skipped:
        sys.stderr.write(f"Not kept for the next execution (cannot be serialised): {', '.join(skipped)}\n")
    with open(STATE_OUT, "wb") as handle:
        handle.write(struct.pack(">Q", len(raw)) + server.compress(raw))


async def run_user_code(namespace: dict[str, Any], source: str) -> int:
    try:
        code = compile(source, "<code>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # noqa: S307 - running the user's program is the point
        if inspect.iscoroutine(result):
            await result
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException as error:  # noqa: BLE001 - reported like an uncaught exception in a script
        trace = traceback.extract_tb(error.__traceback__)
        user_frames = [frame for frame in trace if frame.filename == "<code>"]
        lines = traceback.format_list(user_frames) if user_frames else []
        sys.stderr.write("Traceback (most recent call last):\n" + "".join(lines))
        sys.stderr.write("".join(traceback.format_exception_only(type(error), error)))
        return 1
    return 0


async def run_bash(channel: Channel, tools: list[list[str]], script: str) -> int:
    work = "/tmp/.codeapi-tools"
    os.mkdir(work, 0o700)
    read_end, write_end = os.pipe()
    env = {**os.environ, "CODEAPI_TOOL_DIR": work, "CODEAPI_TOOL_PIPE": str(write_end)}
    child = subprocess.Popen(["/bin/bash", script], env=env, pass_fds=(write_end,))
    os.close(write_end)
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), os.fdopen(read_end, "rb"))
    batcher = Batcher(channel, BASH_QUIET_S)

    async def serve(call_id: str, index: str) -> None:
        base = os.path.join(work, os.path.basename(call_id))
        try:
            with open(base + ".in", encoding="utf-8") as handle:
                text = handle.read().strip()
            arguments = json.loads(text) if text else {}
            if not isinstance(arguments, dict):
                raise ValueError("the argument must be a JSON object")
            ok, output = True, json.dumps(await batcher.submit(tools[int(index)][1], arguments), separators=(",", ":"))
        except (ValueError, IndexError) as error:
            ok, output = False, f"invalid tool call: {error}"
        except RuntimeError as error:
            ok, output = False, str(error)
        except OSError:
            return
        with open(base + ".out", "w", encoding="utf-8") as handle:
            handle.write(output)
        await answer(base + ".fifo", "ok" if ok else "error")

    tasks: set[asyncio.Task[None]] = set()
    while line := await requests.readline():
        parts = line.decode(errors="replace").split()
        if len(parts) == 2:
            task = loop.create_task(serve(*parts))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    return await asyncio.to_thread(child.wait)


async def answer(fifo: str, status: str) -> None:
    """Wake the caller blocked on its FIFO; give up on one that is gone (killed by ``timeout``, say)."""
    deadline = asyncio.get_running_loop().time() + FIFO_WAIT_S
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            # ENXIO: the caller has not opened its end yet (it is still between request and read).
            if error.errno != errno.ENXIO or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.002)
            continue
        try:
            os.write(fd, (status + "\n").encode())
        except OSError:
            pass
        finally:
            os.close(fd)
        return


async def main() -> int:
    mode, tools_path, source_path = sys.argv[1:4]
    sys.path.append(LIBRARY)
    sock = socket.socket(fileno=int(os.environ.pop("CODEAPI_TOOL_FD")))
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    channel = Channel(reader, writer)
    with open(tools_path, encoding="utf-8") as handle:
        tools = json.load(handle)
    if mode == SCRIPT:
        return await run_bash(channel, tools, source_path)
    with open(source_path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = [source_path]
    return await run_python(channel, tools, source)


if __name__ == "__main__":
    status = asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # bash's background jobs may still hold the request pipe: do not wait for them
