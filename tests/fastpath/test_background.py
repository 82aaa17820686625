"""_fastpath/background.py: one loopfast thread per process, and none once no fast-path
connection has been open for a while (CPython's own suites fail a test that leaves a thread
behind): the thread lingers ``registry.LINGER`` (1 s) after the last close, so a process that
connects every second does not start one per connection, and is gone within
``registry.CLOSED_WITHIN`` (2 s).

Run in a fresh interpreter: this test process keeps the thread for the whole session
(conftest's ``_background_kept``), so fd-counting tests see it stay.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from loopfast._fastpath import registry

SCRIPT = textwrap.dedent("""
    import json, socket, threading, time
    import loopfast

    def loopfast_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("loopfast"))

    seen = {"before": loopfast_threads()}
    srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    srv.settimeout(5)
    pairs = []
    for transport in ("ring", "stream", "ring"):
        cli = loopfast.create_connection(srv.getsockname(), 5, fast_path=transport)
        acc, _ = srv.accept()
        assert cli.fast_path_transport == transport, cli.fast_path_transport
        pairs.append((cli, acc))
    cli, acc = pairs[0]
    cli.sendall(b"x")
    assert acc.recv(1) == b"x"
    seen["open"] = loopfast_threads()
    for cli, acc in pairs:
        cli.close()
        acc.close()
    time.sleep(0.6)
    seen["lingering"] = loopfast_threads()
    deadline = time.monotonic() + 5
    while loopfast_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen["closed"] = loopfast_threads()
    seen["closed_after_s"] = round(5.6 - (deadline - time.monotonic()), 2)
    # And it comes back with the next connection.
    cli = loopfast.create_connection(srv.getsockname(), 5, fast_path=True)
    acc, _ = srv.accept()
    seen["again"] = loopfast_threads()
    cli.close(); acc.close(); srv.close()
    print(json.dumps(seen))
""")


def test_one_thread_while_connections_are_open_and_none_after() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["before"] == []
    assert seen["open"] == ["loopfast"]  # peer watching, ring trims and stat: one thread
    assert seen["lingering"] == ["loopfast"]  # LINGER: a connection soon after finds it
    assert seen["closed"] == [], f"still running {seen['closed_after_s']} s after the last close"
    # The documented bound, and scheduling slack for a loaded machine.
    assert seen["closed_after_s"] < registry.CLOSED_WITHIN + 0.5
    assert seen["again"] == ["loopfast"]
