"""The one HTTP client for every outbound request the hub makes.

Every call has a timeout, connections are pooled per process, redirects are never followed,
and an SSRF guard refuses private, loopback, link-local and other non-public addresses unless
`HUB_OUTBOUND_ALLOW_NETWORKS` (CIDRs) permits them. The guard checks every address the host
resolves to before connecting, and the address actually connected to (so a DNS answer that
changes between the two cannot slip a private address through).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

USER_AGENT = "integration-hub/0.1 (+outbound)"


class OutboundRefused(Exception):
    """The destination is not allowed (SSRF guard) or the URL is not usable."""


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes
    latency_ms: float


# Seconds a request may take to connect, at most (its timeout, when lower); then its read timeout.
CONNECT_TIMEOUT = 5.0


@functools.lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in spec if s.strip())


def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _networks(tuple(getattr(settings, "HUB_OUTBOUND_ALLOW_NETWORKS", ()) or ()))


def address_allowed(address: str) -> bool:
    """Whether the hub may connect to this IP address: public ones, or ones in the allow-list."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _allowed_networks()):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_host(host: str, port: int) -> None:
    """Resolve `host`; refuse it unless every address it resolves to is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise requests.ConnectionError(f"cannot resolve {host}: {exc}") from None
    addresses = {str(info[4][0]) for info in infos}  # an IPv4 or IPv6 address (SOCK_STREAM)
    refused = sorted(a for a in addresses if not address_allowed(a))
    if refused:
        raise OutboundRefused(f"{host} resolves to a private or reserved address ({', '.join(refused)})")


def _check_peer(conn: HTTPConnection) -> None:
    sock = conn.sock
    peer = sock.getpeername()[0] if sock is not None else None
    if peer is not None and not address_allowed(peer):
        conn.close()
        raise OutboundRefused(f"connected to a private or reserved address ({peer})")


class _GuardedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self)


class _GuardedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


@functools.cache
def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the environment
    adapter = _GuardedAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def url_check(url: str) -> tuple[str, int]:
    """Refuse a URL the hub must not call (scheme, credentials, guard); return its host and port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("only http:// and https:// URLs with a host can be called")
    if parts.username or parts.password:
        raise OutboundRefused("URLs may not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused("the URL's port is not valid") from None
    check_host(parts.hostname, port)
    return parts.hostname, port


def post(
    url: str,
    *,
    data: bytes,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float | None = None,
    max_response_bytes: int = 64 * 1024,
) -> OutboundResponse:
    """POST `data` to `url`; return the answer (a redirect is returned, never followed).

    Raises OutboundRefused (not allowed), requests.Timeout or requests.ConnectionError.
    """
    url_check(url)
    timeout = timeout if timeout is not None else settings.HUB_OUTBOUND_TIMEOUT
    started = time.perf_counter()
    response = _session().post(
        url,
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=auth,
        timeout=(min(timeout, CONNECT_TIMEOUT), timeout),
        allow_redirects=False,
        stream=True,
    )
    try:
        body = response.raw.read(max_response_bytes, decode_content=True) or b""
    except ReadTimeoutError as exc:
        raise requests.Timeout(f"reading the answer timed out: {exc}") from exc
    except Urllib3Error as exc:  # the connection broke mid-answer
        raise requests.ConnectionError(f"reading the answer failed: {exc}") from exc
    finally:
        response.close()
    latency = (time.perf_counter() - started) * 1000
    return OutboundResponse(response.status_code, dict(response.headers), body, latency)
