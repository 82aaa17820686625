"""Every socket class loopfast makes, and ``become``, the one place a socket changes kind.

Importing this package defines every kind, so ``become`` knows them all.
"""

from .base import TRANSPORTS, become, socket
from .filtered import FilteredSocket
from .listener import FastPathListener
from .ring import RingSocket
from .stream import FastPathSocket

__all__ = ["TRANSPORTS", "FastPathListener", "FastPathSocket", "FilteredSocket", "RingSocket",
           "become", "socket"]
