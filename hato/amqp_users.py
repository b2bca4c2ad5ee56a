"""``hato amqp user``: RabbitMQ users for the tenants' platform teams, made through RabbitMQ's
management HTTP API (the rabbitmq_management plugin) with the permissions of
``shared.teams.team_permissions``: submit mail, read the tenant's own events, nothing else."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx

from shared.settings import BrokerSettings
from shared.teams import check_tenant, team_permissions, team_user

MANAGEMENT_PORT = 15672
TEAM_TAG = "hato-team"  # a tag of our own: RabbitMQ gives it no rights, `list` finds users by it


class ManagementError(Exception):
    """Raised when the management API cannot be reached or refuses a request."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    base: str  # http(s)://host:port, no credentials
    user: str
    password: str
    vhost: str


def endpoint(settings: BrokerSettings) -> Endpoint:
    """Where the management API is and who to be there: ``management_url``, else port 15672
    on the host of the first AMQP URL; the credentials of that URL unless it has its own. The
    vhost is the AMQP URL's."""
    amqp = urlsplit(settings.urls()[0])
    vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
    if settings.management_url:
        url = urlsplit(settings.management_url)
    else:
        url = urlsplit(f"http://{amqp.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}")
    user = unquote(url.username or amqp.username or "guest")
    password = unquote(url.password or amqp.password or "guest")
    netloc = url.hostname or "127.0.0.1"
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if url.port:
        netloc += f":{url.port}"
    base = urlunsplit((url.scheme or "http", netloc, url.path.rstrip("/"), "", ""))
    return Endpoint(base, user, password, vhost)


def team_url(settings: BrokerSettings, user: str, password: str) -> str:
    """The AMQP URL a team connects with: the first broker URL's host, port and vhost."""
    amqp = urlsplit(settings.urls()[0])
    host = amqp.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@" + (
        f"[{host}]" if ":" in host else host
    )
    if amqp.port:
        netloc += f":{amqp.port}"
    return urlunsplit((amqp.scheme or "amqp", netloc, amqp.path or "/", "", ""))


class Management:
    """The few management API calls the team users need."""

    def __init__(self, where: Endpoint, *, timeout: float = 10.0) -> None:
        self.where = where
        self.client = httpx.AsyncClient(
            base_url=where.base, auth=(where.user, where.password), timeout=timeout
        )

    async def __aenter__(self) -> Management:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = await self.client.request(method, "/api" + path, json=body)
        except httpx.HTTPError as exc:
            raise ManagementError(
                f"RabbitMQ's management API at {self.where.base} cannot be reached ({exc}); "
                "enable the rabbitmq_management plugin or set HATO_AMQP_MANAGEMENT_URL"
            ) from None
        if r.status_code == 404 and method == "GET":
            return None
        if r.status_code >= 400:
            raise ManagementError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def _vhost(self) -> str:
        return quote(self.where.vhost, safe="")

    async def add_team(self, prefix: str, tenant: str) -> tuple[str, str]:
        """Create (or reset) ``tenant``'s team user with a new password: (user, password)."""
        grants = team_permissions(prefix, check_tenant(tenant))
        user, password = team_user(prefix, tenant), secrets.token_urlsafe(24)
        name = quote(user, safe="")
        await self._call("PUT", f"/users/{name}", {"password": password, "tags": TEAM_TAG})
        await self._call(
            "PUT",
            f"/permissions/{self._vhost()}/{name}",
            {"configure": grants.configure, "write": grants.write, "read": grants.read},
        )
        await self._call(
            "PUT",
            f"/topic-permissions/{self._vhost()}/{name}",
            {
                "exchange": grants.topic_exchange,
                "write": grants.topic_write,
                "read": grants.topic_read,
            },
        )
        return user, password

    async def remove_team(self, prefix: str, tenant: str) -> bool:
        """Delete ``tenant``'s team user (its connections are closed); False if there was none."""
        name = quote(team_user(prefix, check_tenant(tenant)), safe="")
        if await self._call("GET", f"/users/{name}") is None:
            return False
        await self._call("DELETE", f"/users/{name}")
        return True

    async def teams(self, prefix: str) -> list[dict[str, Any]]:
        """The team users of this prefix: user, tenant and their permissions in the vhost."""
        start = f"{prefix}.team."
        users = await self._call("GET", "/users") or []
        found = []
        for u in users:
            tags = u.get("tags") or []
            tags = tags.split(",") if isinstance(tags, str) else tags
            if not u["name"].startswith(start) or TEAM_TAG not in tags:
                continue
            name = quote(u["name"], safe="")
            perms = await self._call("GET", f"/permissions/{self._vhost()}/{name}") or {}
            topic = await self._call("GET", f"/topic-permissions/{self._vhost()}/{name}") or []
            found.append(
                {
                    "user": u["name"],
                    "tenant": u["name"][len(start) :],
                    "configure": perms.get("configure"),
                    "write": perms.get("write"),
                    "read": perms.get("read"),
                    "topic": [
                        {"exchange": t["exchange"], "read": t["read"], "write": t["write"]}
                        for t in topic
                    ],
                }
            )
        return sorted(found, key=lambda t: t["user"])
