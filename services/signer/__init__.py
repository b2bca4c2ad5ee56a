"""Signer: DKIM-signs each accepted message and fans it out into delivery jobs per domain."""
