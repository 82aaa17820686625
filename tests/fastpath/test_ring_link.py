"""_fastpath/ring_link.py: a RingOffer that cannot be made gives up what it made."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_ring_offer_closes_its_arena_when_a_socket_pair_fails() -> None:
    # In a child whose fd table is small and dense: the limit leaves room for the
    # arena's memfd only, so the socket pair fails with EMFILE.
    code = textwrap.dedent("""
        import errno, os, resource
        from loopfast._fastpath.ring_link import RingOffer

        def fds():
            return sorted(int(n) for n in os.listdir("/proc/self/fd"))

        before = fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(before) + 2, hard))
        try:
            RingOffer((2, "127.0.0.1", 1, os.getuid()), 65536, 65536)
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        else:
            raise SystemExit("RingOffer was made within the limit: the test needs a tighter one")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        after = fds()
        assert after == before, f"leaked fds: {sorted(set(after) - set(before))}"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr or done.stdout
