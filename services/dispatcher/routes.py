"""Static routes: which host:port receives mail for a destination domain."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domains import walk_up


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class RouteTable:
    """``domain=host:port`` entries; a domain's route also covers its subdomains; ``*`` is
    the fallback."""

    def __init__(self, routes: dict[str, Destination]) -> None:
        self._routes = {d.lower(): dest for d, dest in routes.items()}

    @classmethod
    def parse(cls, text: str) -> RouteTable:
        """Parse ``'example.com=10.0.0.5:25,*=127.0.0.1:2526'``; ValueError when malformed."""
        routes: dict[str, Destination] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            domain, eq, target = item.partition("=")
            host, colon, port = target.strip().rpartition(":")
            if not eq or not colon or not domain.strip() or not host or not port.isdigit():
                raise ValueError(f"bad route {item!r}: expected domain=host:port")
            routes[domain.strip()] = Destination(host.strip("[]"), int(port))
        return cls(routes)

    def lookup(self, domain: str) -> Destination | None:
        for name in walk_up(domain, top=True):
            dest = self._routes.get(name)
            if dest is not None:
                return dest
        return self._routes.get("*")
