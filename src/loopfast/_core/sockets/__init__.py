"""Every socket class loopfast makes, and ``become``, the one place a socket changes kind.

Importing this package defines every kind, so ``become`` knows them all, and
installs the TLS hook (``tls``) that lets ``SSLContext.wrap_socket`` take a ring.
"""

from .base import TRANSPORTS, become, socket
from .filtered import FilteredSocket
from .listener import FastPathListener
from .ring import RingSocket
from .stream import FastPathSocket
from .tls import RingTLSSocket, TLSListener

__all__ = ["TRANSPORTS", "FastPathListener", "FastPathSocket", "FilteredSocket", "RingSocket",
           "RingTLSSocket", "TLSListener", "become", "socket"]
