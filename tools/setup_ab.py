"""Connection set-up, A/B: two source trees (or more) side by side in one run.

Each connection: connect, 1 byte each way, close; the server runs in another
process. Every tree gets its own server, and the trees (and plain TCP) take
turns in rounds, each round in a fresh client process that warms up first, so
the machine's drift hits every tree alike. Prints the median round per tree
and its ratio to TCP. A tree is a ``src`` directory with its C core built in
place, e.g. one made by ``git archive REV | tar -x -C DIR`` and a
``pip install -e`` or the gcc line of docs/design.md.

    python tools/setup_ab.py --trees /tmp/old/src,src [--kind ring|stream|tcp-server]
                             [--rounds 24] [--per-round 500]

``--kind tcp-server``: each tree's client is ``fast_path="auto"`` (what ``loopfast
run`` makes) and its server a plain TCP one that does not take part, so the row
is what the fast path costs a client whose server is not loopfast's.

The server and client roles of this file run in the child processes.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.abspath(__file__)
TIMEOUT = 60.0


def _open(kind: str, server: bool = False) -> socket.socket:
    if kind == "tcp" or (server and kind == "tcp-server"):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    import loopfast
    word = {"ring": True, "tcp-server": "auto"}.get(kind, kind)
    return loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=word)


def serve(kind: str) -> None:
    """Accept connections until one sends b"Q"; answer each byte with b"y"."""
    lst = _open(kind, server=True)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    print(lst.getsockname()[1], flush=True)
    while True:
        conn, _ = lst.accept()
        if conn.recv(1) == b"Q":
            conn.close()
            return
        conn.sendall(b"y")
        conn.close()


def client(kind: str, port: int, count: int) -> None:
    """Make *count* connections after 100 unmeasured ones; print µs per connection."""
    def one() -> None:
        sock = _open(kind)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"x")
        if sock.recv(1) != b"y":
            raise SystemExit("wrong answer")
        sock.close()
    for _ in range(100):
        one()
    began = time.perf_counter()
    for _ in range(count):
        one()
    print((time.perf_counter() - began) / count * 1e6)


def _env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.path.abspath(tree)
    return env


def main(argv: list[str]) -> None:
    """Parse *argv*, run the rounds, print the table."""
    if argv[:1] == ["serve"]:
        serve(argv[1])
        return
    if argv[:1] == ["client"]:
        client(argv[1], int(argv[2]), int(argv[3]))
        return
    if argv[:1] == ["quit"]:
        sock = _open(argv[1])
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", int(argv[2])))
        sock.sendall(b"Q")
        sock.close()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", required=True, help="src directories, comma-separated")
    parser.add_argument("--kind", default="ring", choices=["ring", "stream", "tcp-server"])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--per-round", type=int, default=500)
    args = parser.parse_args(argv)
    trees = dict.fromkeys(args.trees.split(","))  # a tree named twice runs once
    variants: list[tuple[str, str, str | None]] = [(tree, args.kind, tree) for tree in trees]
    variants.append(("tcp", "tcp", None))
    servers = {}
    try:
        for name, kind, tree in variants:
            proc = subprocess.Popen([sys.executable, HERE, "serve", kind], env=_env(tree),
                                    stdout=subprocess.PIPE, text=True)
            servers[name] = (proc, int(proc.stdout.readline()) if proc.stdout else 0)
        rounds: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for _ in range(args.rounds):
            for name, kind, tree in variants:
                out = subprocess.run(
                    [sys.executable, HERE, "client", kind, str(servers[name][1]),
                     str(args.per_round)], env=_env(tree), capture_output=True, text=True,
                    timeout=TIMEOUT, check=True).stdout
                rounds[name].append(float(out))
    finally:
        for name, kind, tree in variants:
            if name not in servers:
                continue
            proc, port = servers[name]
            try:
                subprocess.run([sys.executable, HERE, "quit", kind, str(port)],
                               env=_env(tree), timeout=TIMEOUT, check=False)
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:  # no server outlives the run
                proc.kill()
                proc.wait(TIMEOUT)
    tcp = statistics.median(rounds["tcp"])
    print(f"{'tree':40} {'median us/conn':>15} {'vs tcp':>8}")
    for name, _, _ in variants:
        median = statistics.median(rounds[name])
        print(f"{name:40} {median:15.1f} {tcp / median:7.3f}x")



if __name__ == "__main__":
    main(sys.argv[1:])
