"""The programs ``loopfast bench apps`` runs, unchanged, with and without ``loopfast run``.

Each file here is run by path (``python FILE``), never imported by loopfast: none of
them imports loopfast, so the plain runs are plain. ``server.py`` and ``client.py``
hold the servers and clients the libraries do not ship as commands; ``asgi_app.py``
(uvicorn's) and ``wsgi_app.py`` (gunicorn's) are the applications those servers load.
Every reply is ``reply(n)`` for request ``n``, and every client checks it.
"""
