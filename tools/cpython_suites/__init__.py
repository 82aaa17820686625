"""CPython's own socket test suites as a conformance oracle for ``loopfast run``.

``python -m tools.cpython_suites`` (``make cpython-suites``) runs test_socket, test_ssl,
test_httplib, test_urllib2_localnet, test_socketserver and two asyncio suites from the
interpreter's ``test`` package three ways (plain, ``loopfast run --transport ring``,
``--transport stream``), counts the tests that took the fast path, and compares each
test's outcome with the plain run and with ``expected_differences.toml``.
docs/cpython-suites.md says how to read the table.

Modules: ``_trace`` (the child: regrtest with a per-test log), ``outcomes`` (JUnit and
log parsing), ``runner`` (the child processes), ``expected`` (the list), ``compare``,
``report``, ``cli``.
"""
