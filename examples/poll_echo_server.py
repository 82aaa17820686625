"""The WSAPoll echo server of the seed talk, in Python with loopfast.poll.

One listening socket and up to 15 clients in one poll array (1 + 15 entries):
POLLRDNORM on the listener means a connection waits (accept it), POLLRDNORM on
a client means data (echo it), POLLHUP means the client is gone (close it).
Empty slots hold INVALID_SOCKET (None). While all slots are taken the listener
is left out of the array, so further clients wait in the listen backlog.

    python examples/poll_echo_server.py [PORT] [--fast-path]

The same server, with buffering for clients that read slowly, is
``loopfast echo-server --port PORT --max-clients 15``.
"""

from __future__ import annotations

import sys

import loopfast

CLIENT_MAX_COUNT = 1 + 15  # fdArray[clientMaxCount]: the listener and 15 clients


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 8000
    fast = "--fast-path" in sys.argv
    listen_socket = loopfast.create_server(("127.0.0.1", port), fast_path=fast)
    print(f"listening on 127.0.0.1:{listen_socket.getsockname()[1]}", flush=True)

    fd_array = [loopfast.PollFD(None, 0) for _ in range(CLIENT_MAX_COUNT)]
    fd_array[0] = loopfast.PollFD(listen_socket, loopfast.POLLRDNORM)
    try:
        while True:
            full = all(entry.fd is not None for entry in fd_array[1:])
            fd_array[0].fd = None if full else listen_socket
            result = loopfast.poll(fd_array, 500)
            if result == 0:
                continue  # timed out
            for i, entry in enumerate(fd_array):
                if entry.revents & loopfast.POLLRDNORM:
                    if entry.fd is listen_socket:
                        accept_socket(fd_array, listen_socket)
                    else:
                        receive_socket(entry, i)
                elif entry.revents & (loopfast.POLLHUP | loopfast.POLLERR):
                    closed_socket(entry, i)
    except KeyboardInterrupt:
        pass
    finally:
        for entry in fd_array[1:]:
            if entry.fd is not None:
                closed_socket(entry, fd_array.index(entry))
        listen_socket.close()


def accept_socket(fd_array: list[loopfast.PollFD], listen_socket: loopfast.socket) -> None:
    conn, addr = listen_socket.accept()
    slot = next(i for i, entry in enumerate(fd_array) if i and entry.fd is None)
    fd_array[slot].fd, fd_array[slot].events = conn, loopfast.POLLRDNORM
    print(f"[{slot}] connected: {addr}", flush=True)


def receive_socket(entry: loopfast.PollFD, i: int) -> None:
    conn = entry.fd
    assert isinstance(conn, loopfast.socket)
    try:
        data = conn.recv(4096)
        if data:
            conn.sendall(data)  # small echoes; a client that never reads would stall us
            return
    except OSError:
        pass  # the client vanished mid-message
    closed_socket(entry, i)


def closed_socket(entry: loopfast.PollFD, i: int) -> None:
    conn = entry.fd
    if isinstance(conn, loopfast.socket):
        conn.close()
    entry.fd, entry.events = None, 0
    print(f"[{i}] closed", flush=True)


if __name__ == "__main__":
    main()
