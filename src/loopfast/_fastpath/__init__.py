"""The fast path's kernel parts: rendezvous, handshake, owner check, listener bundle,
ring link and the stat registry.

Everything here builds and returns state objects (``connection.Connection``,
``ring_link.RingConnection``, ``listener.Listener``); nothing here imports a
socket class, so the socket classes (``_core.sockets``) sit on top of it.
"""
