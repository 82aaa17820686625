"""The stdlib's socket class as it was when loopfast was imported.

``loopfast.patch()`` rebinds ``socket.socket`` for unchanged programs; loopfast's
own kernel sockets (the TCP listener behind a bundle, rendezvous streams,
shadow and reservation sockets) must stay plain, so the core builds them, and
calls the stdlib's methods, through this name.
"""

from __future__ import annotations

import socket

StdSocket = socket.socket
