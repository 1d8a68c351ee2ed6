"""Server-side request forgery guard: refuse webhook URLs that reach loopback, private or reserved addresses."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Python 3.11's is_private does not cover the carrier-grade NAT range, and it is not public either.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# The well-known NAT64 prefix embeds an IPv4 address in the low 32 bits (RFC 6052). The local-use
# prefix 64:ff9b:1::/48 (RFC 8215) is not global and is refused as such.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):  # noqa: N818 - the name the API layer maps to 422
    """A webhook URL that is malformed or points somewhere the bus must not send requests."""


def _parse(url: str) -> tuple[str, int]:
    """The (host, port) of a syntactically acceptable http(s) URL; UnsafeUrl otherwise."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeUrl("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeUrl(f"URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeUrl(f"URL scheme must be http or https, got {parts.scheme or 'none'!r}")
    # userinfo would be sent as Basic auth and is a classic parser-confusion trick (http://a@b/).
    if "@" in parts.netloc:
        raise UnsafeUrl("URL must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("URL has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("URL port must be a number from 1 to 65535") from exc
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise UnsafeUrl("URL port must be a number from 1 to 65535")
    return host.rstrip(".") or host, port


def _literal(host: str) -> IPAddress | None:
    """The host as an IP address when it is one (IPv6 zone ids dropped), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _default_resolver(host: str, port: int) -> list[str]:
    """Every address getaddrinfo returns for host:port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _refusal(addr: IPAddress) -> str | None:
    """Why an address must not be contacted, or None when it is public."""
    if isinstance(addr, ipaddress.IPv6Address):
        # These forms are one IPv4 address in disguise: the IPv4 address decides, in both directions
        # (a DNS64 network legitimately turns every public IPv4 host into 64:ff9b::a.b.c.d).
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr in _NAT64_WELL_KNOWN:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _refusal(embedded)
            return None if inner is None else f"embeds {embedded}, {inner}"
        # Teredo tunnels through a relay; only use the embedded client to explain a refusal.
        if addr.teredo is not None:
            inner = _refusal(addr.teredo[1])
            if inner is not None:
                return f"embeds {addr.teredo[1]}, {inner}"
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    )
    for attr, reason in checks:
        if getattr(addr, attr):
            return reason
    if isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return "a site-local address"
    if not addr.is_global:
        return "not a public address"
    return None


def _check_addresses(host: str, addresses: Iterable[str], allow_private: bool) -> None:
    """Refuse when no address resolved or, unless allow_private, any address is not public."""
    parsed: list[IPAddress] = []
    for raw in addresses:
        addr = _literal(str(raw))
        if addr is None:
            raise UnsafeUrl(f"host {host!r} resolved to an invalid address {raw!r}")
        parsed.append(addr)
    if not parsed:
        raise UnsafeUrl(f"host {host!r} does not resolve")
    if allow_private:
        return
    # Every address, not just the first: the HTTP client may pick any of them.
    for addr in parsed:
        reason = _refusal(addr)
        if reason is not None:
            shown = "" if str(addr) == host else f" ({addr})"
            raise UnsafeUrl(f"URL host {host}{shown} is {reason}; webhooks must target public addresses")


def check_url(url: str, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise UnsafeUrl unless url is http(s) and every address it resolves to is public (or allow_private)."""
    host, port = _parse(url)
    literal = _literal(host)
    if literal is not None:
        _check_addresses(host, [str(literal)], allow_private)
        return
    try:
        addresses = (resolver or _default_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        # socket.gaierror is an OSError; IDNA failures surface as UnicodeError.
        raise UnsafeUrl(f"host {host!r} does not resolve: {exc}") from exc
    _check_addresses(host, addresses, allow_private)


async def check_url_async(url: str, allow_private: bool, resolver: Resolver | None = None) -> None:
    """check_url for event loops: resolves with loop.getaddrinfo so that DNS never blocks the loop."""
    if resolver is not None:
        check_url(url, allow_private, resolver)
        return
    host, port = _parse(url)
    literal = _literal(host)
    if literal is not None:
        _check_addresses(host, [str(literal)], allow_private)
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"host {host!r} does not resolve: {exc}") from exc
    _check_addresses(host, [str(info[4][0]) for info in infos], allow_private)


class RefusedAddress(OSError):
    """A host name resolved, when connecting, to an address webhooks must not reach."""


def refuse_private(host: str, addresses: Sequence[str]) -> None:
    """The HTTP client's check of the addresses it is about to connect to: RefusedAddress unless all are public.

    ``check_url`` looks a name up before a batch is sent, but the client resolves it again to connect: a DNS
    answer that changes in between (rebinding: public for the check, 127.0.0.1 for the connection) would get
    through. Checking the very answer the connection then uses (``http1.Http1Pool``) closes that window.
    """
    try:
        _check_addresses(host, addresses, allow_private=False)
    except UnsafeUrl as exc:
        raise RefusedAddress(str(exc)) from None
