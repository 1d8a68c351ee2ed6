"""A local webhook receiver for trying the bus: prints each delivery and checks its signature.

    .venv/bin/python scripts/webhook_receiver.py --port 9000 --secret whsec_... [--fail 2]

``--fail N`` answers 500 to the first N deliveries of each webhook-id, to watch retries happen.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger("receiver")


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True when one of the v1 signatures matches (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[-1] == expected for sig in headers.get("webhook-signature", "").split())


def main() -> None:
    """Serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the subscription's whsec_ secret, to check signatures")
    parser.add_argument("--fail", type=int, default=0, help="answer 500 this many times per webhook-id")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seen: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            msg_id = headers.get("webhook-id", "?")
            seen[msg_id] += 1
            event = json.loads(body or b"{}")
            signed = "unchecked" if not args.secret else ("ok" if verify(args.secret, headers, body) else "BAD")
            status = 500 if seen[msg_id] <= args.fail else 200
            logger.info("%s attempt %d type=%s signature=%s -> %d", msg_id, seen[msg_id], event.get("type"),
                        signed, status)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
