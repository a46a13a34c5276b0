"""Host and Origin checks for the web editor: a refused request never reaches a route.

A page on another site can make the user's browser post to the loopback server (a cross-site
form or fetch: its Origin is that site), and DNS rebinding points a name the attacker owns at
127.0.0.1 (the Host header is then that name).  Requests are served only when the Host header
is one of the server's own addresses and the Origin, when the browser sends one, is too.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional, Sequence, Tuple
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_NAMES = {"127.0.0.1": ("127.0.0.1", "localhost"), "::1": ("[::1]", "localhost")}
WILDCARDS = {"0.0.0.0": ("127.0.0.1", "localhost"), "::": ("[::1]", "127.0.0.1", "localhost")}

Address = Tuple[str, Optional[int]]  # (lower-case name, port or None for any port)


def split_host(value: str, default_port: Optional[int] = None) -> Optional[Address]:
    """`name`, `name:port` or `[v6]:port` -> (name, port); None when it is not a host at all."""
    value = value.strip().lower()
    if not value or any(c in value for c in "/@?# \t"):
        return None
    name, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
    elif value.count(":") == 1:
        name, text = value.split(":")
        port = _port(text)
        if port is None or not name:
            return None
    elif ":" in value:  # a bare IPv6 address
        try:
            name = f"[{ipaddress.IPv6Address(value)}]"
        except ValueError:
            return None
    return name, port


def _port(text: str) -> Optional[int]:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def served_hosts(host: str, port: int) -> list:
    """The Host values a browser uses for a server listening on host:port (loopback: its names too)."""
    names = LOOPBACK_NAMES.get(host) or WILDCARDS.get(host)
    if names is None:
        names = ("127.0.0.1", "[::1]", "localhost") if host == "localhost" else (host,)
    out = []
    for name in names:
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"
        out.append(f"{name}:{port}")
    return out


@dataclass(frozen=True)
class HostPolicy:
    """The addresses requests may name: `name:port` entries match that port, bare names any port."""

    allowed: FrozenSet[Address]
    shown: Tuple[str, ...]  # for the refusal message

    @classmethod
    def of(cls, hosts: Iterable[str]) -> "HostPolicy":
        allowed, shown = set(), []
        for h in hosts:
            address = split_host(h)
            if address is None:
                raise ValueError(f"not a host name or host:port: {h!r}")
            allowed.add(address)
            shown.append(h)
        if not allowed:
            raise ValueError("at least one allowed host is needed")
        return cls(frozenset(allowed), tuple(shown))

    def allows(self, address: Optional[Address]) -> bool:
        if address is None:
            return False
        name, port = address
        return (name, port) in self.allowed or (name, None) in self.allowed

    def refusal(self, headers: dict) -> Optional[str]:
        """Why a request with these (lower-case) headers is refused, or None when it is allowed."""
        host = headers.get("host")
        if host is None:
            return "refused: the request has no Host header"
        if not self.allows(split_host(host, DEFAULT_PORTS["http"])):
            return (
                f"refused: Host {_show(host)} is not this editor's address ({', '.join(self.shown)}); "
                "behind a reverse proxy, start it with --allow-host NAME"
            )
        origin = headers.get("origin")
        if origin is not None and not self.allows(_origin_address(origin)):
            return f"refused: a page from {_show(origin)} may not use this editor (only its own page may)"
        return None


def _origin_address(origin: str) -> Optional[Address]:
    """`scheme://host[:port]` -> (name, port); None for `null` or anything else."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc or parts.path or parts.query:
        return None
    return split_host(parts.netloc, DEFAULT_PORTS[parts.scheme])


def _show(value: str) -> str:
    return repr(value[:80] + ("..." if len(value) > 80 else ""))


class HostGuard:
    """ASGI middleware: a 403 with a one-line JSON error for a request `policy` refuses."""

    def __init__(self, app, hosts: Sequence[str]) -> None:
        self.app = app
        self.policy = HostPolicy.of(hosts)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            why = self.policy.refusal(headers)
            if why is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = json.dumps({"error": why}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
                await send({"type": "http.response.start", "status": 403, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
