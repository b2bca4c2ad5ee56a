"""Provisioning rules shared by the ``hato`` command and the admin HTTP API: adding a sending
domain (with its first DKIM key), generating keys, verifying domains through DNS."""

from __future__ import annotations

import asyncio
from typing import Any

from shared import dkim
from shared.directory import Directory
from shared.dns import KeyCheck, check_dkim, records_for
from shared.errors import HatoError
from shared.secrets import SecretBox
from shared.settings import DnsSettings


class ProvisioningError(HatoError):
    """Raised when a provisioning request cannot be carried out; the message says why."""


class Provisioner:
    def __init__(self, directory: Directory, box: SecretBox | None, dns: DnsSettings) -> None:
        self.directory = directory
        self.box = box
        self.dns = dns

    async def add_domain(
        self, domain: str, *, tenant: str, verified: bool = False, selector: str = "hato"
    ) -> dict[str, Any]:
        """Give ``domain`` to ``tenant`` (with a DKIM key unless it has one); the domain doc."""
        domain = domain.lower().rstrip(".")
        if await self.directory.tenant(tenant) is None:
            raise ProvisioningError(f"unknown tenant {tenant}")
        existing = await self.directory.domain(domain)
        if existing and existing["tenant"] != tenant:
            raise ProvisioningError(f"{domain} belongs to tenant {existing['tenant']}")
        await self.directory.upsert_domain(
            domain, tenant=tenant, verified=verified or bool(existing and existing["verified"])
        )
        doc = await self.directory.domain(domain)
        if not (doc or {}).get("dkim"):
            await self.generate_key(domain, selector)
            doc = await self.directory.domain(domain)
        assert doc is not None
        return doc

    async def generate_key(self, domain: str, selector: str) -> None:
        if self.box is None:
            raise ProvisioningError("no master key is configured (HATO_MASTER_KEY_FILE)")
        if await self.directory.domain(domain) is None:
            raise ProvisioningError(f"unknown domain {domain}")
        key = await asyncio.to_thread(dkim.generate_rsa, domain.lower(), selector)
        await self.directory.add_dkim_key(domain, dkim.to_document(key, self.box))

    def records(self, domain: dict[str, Any]) -> list[dict[str, str]]:
        return [r.as_dict() for r in records_for(domain, self.dns)]

    async def verify(self, domain: str) -> tuple[bool, list[KeyCheck]]:
        """Look the DKIM records up; a domain with one found becomes verified."""
        doc = await self.directory.domain(domain)
        if doc is None:
            raise ProvisioningError(f"unknown domain {domain}")
        checks = await check_dkim(doc, self.dns)
        verified = any(c.status == "found" for c in checks)
        if verified and not doc.get("verified"):
            await self.directory.mark_verified(domain)
        return verified or bool(doc.get("verified")), checks
