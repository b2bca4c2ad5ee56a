"""Loopback ports and a TCP proxy (the testing kit's, ``shared/testing.py``)."""

from shared.testing import TcpProxy, free_port

__all__ = ["TcpProxy", "free_port"]
