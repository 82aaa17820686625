"""The loopback fast path: rendezvous, handshake, connection state, owner check."""
