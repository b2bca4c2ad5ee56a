"""docker-compose.yml as Docker Compose loads it, and its network laid onto loopback.

``load()`` runs ``tools/composecheck`` (built by ``scripts/infra.sh compose-check``): the
Compose Specification's own loader (compose-go), so anchors, merges, ``$$`` escapes, defaults
and path resolution are Docker Compose's, not ours. ``Loopback`` maps the compose network onto
127.0.0.0/8 so the same services can run as processes here, each on an address of its own.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shared.testing import ROOT

COMPOSECHECK = ROOT / "var" / "bin" / "composecheck"
COMPOSE_FILE = ROOT / "docker-compose.yml"
BUILD_HINT = "build it with `scripts/infra.sh compose-check` (make test does)"
# Inside a container these are the container itself: "every address" and its own loopback.
OWN_ADDRESSES = ("0.0.0.0", "127.0.0.1")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(/\d{1,2})?(?![\d.])")


class ComposeError(AssertionError):
    """Raised when the compose loader is missing or refuses the file: a failure, never a skip."""


def run_loader(
    path: Path = COMPOSE_FILE, *, project_dir: Path = ROOT
) -> subprocess.CompletedProcess:
    """The loader's verdict on ``path``: exit code, the project as JSON, or its error."""
    if not COMPOSECHECK.is_file():
        raise ComposeError(f"the compose loader {COMPOSECHECK} is missing: {BUILD_HINT}")
    return subprocess.run(
        [str(COMPOSECHECK), "-dir", str(project_dir), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        # The loader sees no variables from this shell, as on a host where nobody set any.
        env={},
    )


def load(path: Path = COMPOSE_FILE, *, project_dir: Path = ROOT) -> dict[str, Any]:
    """The project Docker Compose would run from ``path``."""
    result = run_loader(path, project_dir=project_dir)
    if result.returncode != 0:
        raise ComposeError(f"the compose loader refuses {path}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def seconds(duration: str) -> float:
    """A Go duration as the loader prints it (``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Loopback:
    """The compose network on loopback: ``172.28.a.b`` becomes ``127.28.a.b``, so every
    container keeps an address of its own and the subnet, its gateway and the fixed addresses
    keep their shape. Services without a fixed address get one from ``ip_range`` as Docker
    would. ``volumes`` says which folder stands in for each named volume."""

    project: dict[str, Any]
    volumes: dict[str, Path] = field(default_factory=dict)
    network: str = "default"

    @cached_property
    def _ipam(self) -> dict[str, Any]:
        return self.project["networks"][self.network]["ipam"]["config"][0]

    @cached_property
    def subnet(self) -> ipaddress.IPv4Network:
        net = ipaddress.IPv4Network(self._ipam["subnet"])
        if net.prefixlen < 8:
            raise ValueError(f"{net} is wider than 127.0.0.0/8")
        return net

    @cached_property
    def gateway(self) -> str:
        return self._ipam.get("gateway") or str(next(self.subnet.hosts()))

    @cached_property
    def addresses(self) -> dict[str, str]:
        """Each service's address on the compose network."""
        fixed = {
            name: (s.get("networks") or {}).get(self.network, {}) or {}
            for name, s in self.project["services"].items()
        }
        found = {n: f["ipv4_address"] for n, f in fixed.items() if f.get("ipv4_address")}
        pool = ipaddress.IPv4Network(self._ipam.get("ip_range") or self.subnet)
        free = (str(ip) for ip in pool.hosts() if str(ip) not in {*found.values(), self.gateway})
        for name in sorted(self.project["services"]):
            if name not in found:
                found[name] = next(free)
        return found

    def loopback(self, ip: str) -> str:
        """The loopback address standing in for ``ip`` of the compose subnet."""
        address = ipaddress.IPv4Address(ip)
        if address not in self.subnet:
            raise ValueError(f"{ip} is not on the compose network {self.subnet}")
        return "127." + ".".join(ip.split(".")[1:])

    def address(self, service: str) -> str:
        """Where ``service`` listens here."""
        return self.loopback(self.addresses[service])

    def rewrite(self, text: str, service: str, stand_ins: dict[str, str] | None = None) -> str:
        """``text`` (a setting or a command argument of ``service``) as it must read outside
        containers: URLs to a stood-in service point at the stand-in, the container's own
        addresses and the compose network's become loopback, service names become their
        loopback address, and volume paths become the folders standing in for them."""
        swapped = _swap_urls(text, stand_ins or {})
        if swapped != text:
            return swapped  # the stand-in's own address is no container's

        def ip(match: re.Match[str]) -> str:
            address, prefix = match.group(1), match.group(2) or ""
            if address in OWN_ADDRESSES:
                return self.address(service) + prefix
            try:
                return self.loopback(address) + prefix
            except ValueError:
                return match.group(0)

        text = _IPV4.sub(ip, text)
        for name in self.project["services"]:
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?=:\d)", self.address(name), text)
        for mount in sorted(
            self.project["services"][service].get("volumes") or [],
            key=lambda m: len(m["target"]),
            reverse=True,
        ):
            host = self.volumes.get(mount["source"]) if mount["type"] == "volume" else None
            host = host or (Path(mount["source"]) if mount["type"] == "bind" else None)
            if host is not None:
                target = re.escape(mount["target"])
                text = re.sub(rf"(?<![\w./-]){target}(?=/|\b|$)", str(host), text)
        return text

    def environment(self, service: str, stand_ins: dict[str, str] | None = None) -> dict[str, str]:
        """``service``'s environment from the compose file, rewritten for loopback."""
        env = self.project["services"][service].get("environment") or {}
        return {k: self.rewrite(v or "", service, stand_ins) for k, v in env.items()}


def _swap_urls(text: str, stand_ins: dict[str, str]) -> str:
    """A URL whose host is a stood-in service takes the stand-in's scheme, credentials, host
    and port; its own path and query (``?w=majority``) stay."""
    if "://" not in text:
        return text
    url = urlsplit(text)
    stand_in = stand_ins.get(url.hostname or "")
    if stand_in is None:
        return text
    other = urlsplit(stand_in)
    query = "&".join(q for q in (other.query, url.query) if q)
    return urlunsplit((other.scheme, other.netloc, url.path or other.path, query, url.fragment))
