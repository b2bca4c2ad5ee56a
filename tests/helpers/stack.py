"""Hato's services as real processes (the testing kit's, ``shared/testing.py``)."""

from shared.testing import ROOT, SERVICES, ServiceProcess, Stack

__all__ = ["ROOT", "SERVICES", "ServiceProcess", "Stack"]
