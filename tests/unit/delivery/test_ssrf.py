"""SSRF guard with a fake resolver: which addresses a webhook URL may reach."""
from __future__ import annotations

import asyncio

import pytest

from app.bus.delivery.ssrf import RefusedAddress, UnsafeUrl, check_url, check_url_async, refuse_private


def resolver_for(*addresses: str):
    """A resolver that answers every host with the given addresses and records what it was asked."""
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return list(addresses)

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def failing_resolver(host: str, port: int) -> list[str]:
    raise OSError(-2, "Name or service not known")


REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.5",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.10",
    "169.254.169.254",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104 - a refused address, not a bind
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_refuses_non_public_addresses(address: str) -> None:
    with pytest.raises(UnsafeUrl) as info:
        check_url("https://hooks.example.com/x", allow_private=False, resolver=resolver_for(address))
    assert "hooks.example.com" in str(info.value)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34",
                                     "64:ff9b::5db8:d822", "2002:5db8:d822::1", "100.128.0.1"])
def test_allows_public_addresses(address: str) -> None:
    check_url("https://hooks.example.com/x?y=1", allow_private=False, resolver=resolver_for(address))


def test_one_bad_address_among_good_ones_refuses() -> None:
    with pytest.raises(UnsafeUrl, match="10.0.0.1"):
        check_url("http://example.com/", False, resolver_for("93.184.216.34", "10.0.0.1"))


def test_resolver_gets_host_and_default_ports() -> None:
    resolve = resolver_for("93.184.216.34")
    check_url("https://Example.COM/hook", False, resolve)
    check_url("http://example.com/hook", False, resolve)
    check_url("http://example.com:8080/hook", False, resolve)
    assert resolve.calls == [("example.com", 443), ("example.com", 80), ("example.com", 8080)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://[::1]/x", "http://10.1.2.3/", "http://[fe80::1]/"])
def test_ip_literals_are_checked_without_resolving(url: str) -> None:
    resolve = resolver_for("93.184.216.34")
    with pytest.raises(UnsafeUrl):
        check_url(url, False, resolve)
    assert resolve.calls == []  # type: ignore[attr-defined]


def test_allow_private_allows_loopback_but_not_other_schemes() -> None:
    check_url("http://127.0.0.1:5000/hook", allow_private=True)
    check_url("http://internal.svc/hook", allow_private=True, resolver=resolver_for("10.0.0.7"))
    with pytest.raises(UnsafeUrl, match="scheme"):
        check_url("ftp://127.0.0.1/x", allow_private=True)
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("http://nowhere.invalid/", allow_private=True, resolver=failing_resolver)
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("http://nowhere.invalid/", allow_private=True, resolver=resolver_for())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "required"),
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///path", "no host"),
        ("http://user:pass@example.com/", "user name"),
        ("http://user@example.com/", "user name"),
        ("http://example.com:0/", "port"),
        ("http://example.com:65536/", "port"),
        ("http://example.com:abc/", "port"),
        ("http://example.com/a b", "whitespace"),
        ("http://example.com/\r\nX: y", "whitespace"),
        ("http://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeUrl, match=message):
        check_url(url, allow_private=True, resolver=resolver_for("93.184.216.34"))


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        check_url("https://nowhere.invalid/", False, failing_resolver)


def test_unsafe_url_is_a_value_error() -> None:
    assert issubclass(UnsafeUrl, ValueError)


def test_default_resolver_refuses_localhost() -> None:
    # getaddrinfo for "localhost" answers from /etc/hosts: no network needed.
    with pytest.raises(UnsafeUrl, match="loopback"):
        check_url("http://localhost:8080/", allow_private=False)
    check_url("http://localhost:8080/", allow_private=True)


def test_async_variant() -> None:
    async def run() -> None:
        with pytest.raises(UnsafeUrl, match="loopback"):
            await check_url_async("http://localhost:8080/", allow_private=False)
        await check_url_async("http://localhost:8080/", allow_private=True)
        with pytest.raises(UnsafeUrl, match="private"):
            await check_url_async("http://x.example/", False, resolver_for("192.168.0.1"))
        with pytest.raises(UnsafeUrl, match="scheme"):
            await check_url_async("ftp://x.example/", True)

    asyncio.run(run())


def test_refuse_private_checks_every_address_of_an_answer() -> None:
    # The HTTP client's check of the addresses it connects to (test_http1 shows it runs on every connection).
    refuse_private("hooks.example", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    with pytest.raises(RefusedAddress, match="loopback"):
        refuse_private("hooks.example", ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(RefusedAddress, match="private"):
        refuse_private("hooks.example", ["10.1.2.3"])
    with pytest.raises(RefusedAddress, match="does not resolve"):
        refuse_private("hooks.example", [])


def test_refused_address_is_an_os_error() -> None:
    # The sender reports an OSError from connecting as that attempt's error (never a crash of the dispatcher).
    assert issubclass(RefusedAddress, OSError)
