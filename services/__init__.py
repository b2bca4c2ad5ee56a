"""Hato's four services: ingest, signer, dispatcher and bounce."""
