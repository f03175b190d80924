"""CURVE: encryption on every broker connection, and a gate that admits listed keys only.

:mod:`.keys` owns the key folder (what ``mnist-live keys init`` makes and ``--curve DIR``
reads) and the socket options of each side; :mod:`.gate` is the broker's ZAP authenticator
and the count of refused handshakes.
"""
