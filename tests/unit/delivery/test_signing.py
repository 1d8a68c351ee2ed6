"""Standard Webhooks signing, verified by the reference ``standardwebhooks`` package."""
from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.bus.delivery.signing import CONTENT_TYPE, generate_secret, secret_bytes, sign, webhook_headers

BODY = b'{"specversion":"1.0","id":"evt-1","type":"order.created","data":{"amount":150}}'


def test_generate_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert 24 <= len(raw) <= 32
    assert secret_bytes(secret) == raw
    assert generate_secret() != secret


def test_secret_bytes_accepts_unprefixed_and_unpadded() -> None:
    raw = bytes(range(24))
    encoded = base64.b64encode(raw).decode()
    assert secret_bytes(encoded) == raw
    assert secret_bytes("whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")) == bytes(range(25))


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_!!!notbase64!!!", "whsec_c2hvcnQ=", 123])
def test_secret_bytes_rejects_bad(bad: object) -> None:
    with pytest.raises(ValueError):
        secret_bytes(bad)  # type: ignore[arg-type]


def test_sign_matches_published_test_vector() -> None:
    # The example from the Standard Webhooks / Svix documentation.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_with_standardwebhooks() -> None:
    secret = generate_secret()
    headers = webhook_headers("evt-1", [secret], BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert headers["webhook-id"] == "evt-1"
    assert headers["content-type"] == CONTENT_TYPE
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert Webhook(secret).verify(BODY, headers)["id"] == "evt-1"


def test_tampered_body_or_wrong_secret_fails() -> None:
    secret = generate_secret()
    headers = webhook_headers("evt-1", [secret], BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"150", b"151"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "evt-2"})


def test_rotation_signs_once_per_secret_and_each_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = webhook_headers("evt-1", [old, new], BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_explicit_timestamp_is_used_and_signed() -> None:
    secret = generate_secret()
    ts = int(time.time()) - 10
    headers = webhook_headers("evt-1", [secret], BODY, timestamp=ts)
    assert headers["webhook-timestamp"] == str(ts)
    assert headers["webhook-signature"] == sign(secret, "evt-1", ts, BODY)
    Webhook(secret).verify(BODY, headers)


def test_stale_timestamp_is_rejected_by_receivers() -> None:
    secret = generate_secret()
    headers = webhook_headers("evt-1", [secret], BODY, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize("secrets", [[], "whsec_abc"])
def test_headers_need_a_list_of_secrets(secrets: object) -> None:
    with pytest.raises(ValueError):
        webhook_headers("evt-1", secrets, BODY)  # type: ignore[arg-type]
