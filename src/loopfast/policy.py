"""The administrator's switch for the fast path (SPEC F9).

Windows turns the loopback fast path off wherever a Windows Filtering Platform
callout inspects connection data. Here an administrator turns it off for
everything or for chosen ports, with an environment variable or a policy file;
a covered connection takes ordinary TCP even when both sides asked for the
fast path, so tools that watch TCP see it.

Environment (read at every connect and listen, so a test or a wrapper can set it):

    LOOPFAST_FAST_PATH=off          no fast path at all
    LOOPFAST_EXCLUDE_PORTS=80,8000-8100
                                    no fast path to or from these ports
    LOOPFAST_POLICY_FILE=/path      the policy file (default /etc/loopfast/policy)

Policy file (looked at again at most every ``RECHECK`` seconds, and re-read when
its mtime or size changed: a change takes up to a second to apply; ``invalidate()``
applies it at the next call)::

    # comments and blank lines are ignored
    fast_path = off                 # or on
    exclude_ports = 5432, 8000-8100

A policy that cannot be read or parsed turns the fast path off, and says why
once in the ``loopfast`` logger: a broken policy must fail closed, never open.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

__all__ = ["DEFAULT_POLICY_FILE", "RECHECK", "Policy", "PolicyError", "current", "invalidate"]

DEFAULT_POLICY_FILE = "/etc/loopfast/policy"
# Seconds the policy file's state is trusted: a stat per connection cost more than the
# rest of the policy check. Environment variables are read at every call.
RECHECK = 1.0

_log = logging.getLogger("loopfast")


class PolicyError(ValueError):
    """Raised by ``Policy.parse`` for a policy text it cannot understand."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the administrator allows: the fast path on or off, and excluded ports."""

    enabled: bool = True
    excluded_ports: frozenset[int] = frozenset()
    reason: str = ""

    def allows(self, port: int) -> bool:
        """True when a connection to or from *port* may take the fast path."""
        return self.enabled and port not in self.excluded_ports

    @staticmethod
    def parse_ports(text: str) -> frozenset[int]:
        """Parse ``"80, 8000-8100"`` into a set of ports.

        Raises:
            PolicyError: a part that is not a port or a range of ports.
        """
        ports: set[int] = set()
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, _, high = part.partition("-")
            try:
                first, last = int(low), int(high or low)
            except ValueError:
                raise PolicyError(f"{part!r} is not a port or a range like 8000-8100") from None
            if not 0 <= first <= last <= 65535:
                raise PolicyError(f"{part!r} is outside 0-65535")
            ports.update(range(first, last + 1))
        return frozenset(ports)

    @classmethod
    def parse(cls, text: str, origin: str) -> Policy:
        """Parse a policy file's *text*; *origin* names it in error messages.

        Raises:
            PolicyError: an unknown key, a bad value, or a line without ``=``.
        """
        enabled, ports = True, frozenset[int]()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = (s.strip() for s in line.partition("="))
            if not sep:
                raise PolicyError(f"{origin}:{number}: expected 'key = value', got {raw!r}")
            if key == "fast_path":
                enabled = _switch(value, f"{origin}:{number}")
            elif key == "exclude_ports":
                ports = ports | cls.parse_ports(value)
            else:
                raise PolicyError(f"{origin}:{number}: unknown key {key!r}")
        return cls(enabled, ports, f"policy file {origin}" if not enabled else "")


def _switch(value: str, origin: str) -> bool:
    if value.lower() in ("on", "1", "yes", "true"):
        return True
    if value.lower() in ("off", "0", "no", "false"):
        return False
    raise PolicyError(f"{origin}: fast_path must be on or off, got {value!r}")


class _FileCache:
    """The parsed policy file, looked at every ``RECHECK`` seconds at most and re-read
    when its mtime or size changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._policy = Policy()
        self._reported: set[str] = set()
        self._looked: tuple[str, float, Policy] | None = None  # path, until, answer

    def invalidate(self) -> None:
        with self._lock:
            self._looked = None

    def load(self, path: str) -> Policy:
        now = time.monotonic()
        looked = self._looked
        if looked is not None and looked[0] == path and now < looked[1]:
            return looked[2]
        policy = self._look(path)
        with self._lock:
            self._looked = (path, now + RECHECK, policy)
        return policy

    def _look(self, path: str) -> Policy:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return Policy()
        except OSError as exc:
            return self._broken(path, f"cannot stat it: {exc}")
        key = (path, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key == self._key:
                return self._policy
        try:
            with open(path, encoding="utf-8") as f:
                policy = Policy.parse(f.read(), path)
        except (OSError, UnicodeDecodeError, PolicyError) as exc:
            return self._broken(path, str(exc))
        with self._lock:
            self._key, self._policy = key, policy
        return policy

    def _broken(self, path: str, why: str) -> Policy:
        if why not in self._reported:
            self._reported.add(why)
            _log.error("loopfast: fast path off: policy %s is unusable: %s", path, why)
        return Policy(False, frozenset(), f"unusable policy {path}: {why}")


_files = _FileCache()


def invalidate() -> None:
    """Look at the policy file again at the next ``current()`` (not up to ``RECHECK`` later)."""
    _files.invalidate()


_NAMES = ("LOOPFAST_FAST_PATH", "LOOPFAST_POLICY_FILE", "LOOPFAST_EXCLUDE_PORTS")
_RAW_NAMES = tuple(name.encode() for name in _NAMES)


def _variables() -> tuple[str | None, str | None, str | None]:
    """The three variables, from os.environ's own bytes where it keeps them (CPython on
    POSIX): this runs on every connect and accept, and the public mapping encodes each
    key on every lookup."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict) and os.name == "posix":
        get = data.get
        raw = get(_RAW_NAMES[0]), get(_RAW_NAMES[1]), get(_RAW_NAMES[2])
        if raw == (None, None, None):
            return None, None, None  # the usual case: nothing set
        switch, path, excluded = (None if v is None else os.fsdecode(v) for v in raw)
        return switch, path, excluded
    return os.environ.get(_NAMES[0]), os.environ.get(_NAMES[1]), os.environ.get(_NAMES[2])


def current() -> Policy:
    """The policy in force now: environment first, then the policy file.

    The file is looked at every ``RECHECK`` seconds at most (see ``invalidate``).

    Never raises: an unusable policy is reported in the log and turns the fast path off.
    """
    switch, path, excluded = _variables()
    if switch is not None:
        try:
            if not _switch(switch, "LOOPFAST_FAST_PATH"):
                return Policy(False, frozenset(), "LOOPFAST_FAST_PATH=off")
        except PolicyError as exc:
            return _files._broken("LOOPFAST_FAST_PATH", str(exc))
    policy = _files.load(DEFAULT_POLICY_FILE if path is None else path)
    if excluded:
        try:
            ports = Policy.parse_ports(excluded)
        except PolicyError as exc:
            return _files._broken("LOOPFAST_EXCLUDE_PORTS", str(exc))
        policy = dataclasses.replace(policy, excluded_ports=policy.excluded_ports | ports)
    return policy
