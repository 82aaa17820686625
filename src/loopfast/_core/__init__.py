"""loopfast's core: kernel idioms, addresses and options, the socket classes, and what
builds on them (create_connection/create_server, patch, the asyncio transport).

docs/architecture.md shows the layers; ``tests/test_layers.py`` keeps them.
"""
