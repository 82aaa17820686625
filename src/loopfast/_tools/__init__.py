"""The ``loopfast`` command and what only it uses: info, stat, run, the echo server."""
