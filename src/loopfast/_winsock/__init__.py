"""Winsock's features on Linux: WSAPoll (``poll``, ``flags``), .NET's ``Socket.Poll``
(``socket_poll``) and the ``TCP_INFO`` reader the compatibility mode is checked with
(``tcpinfo``)."""
