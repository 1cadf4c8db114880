"""The alerts API handler in-process behind a loopback HTTP server, as API Gateway would invoke it.

Each HTTP request becomes an HTTP API payload v2 event with the authorizer context API Gateway adds: a
``Bearer`` JWT's claims (decoded, NOT verified: locally there is no issuer; on AWS the JWT authorizer
verifies them), or, without a token, an IAM operator principal. The handler is ``functions/alerts_api/app.py``
loaded by :class:`~cotwatch_local.invoker.LocalInvoker` with the local stack's environment.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cotwatch_local import LOCAL_ACCOUNT_ID

ApiHandler = Callable[[dict[str, Any]], dict[str, Any]]
LOCAL_OPERATOR_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:user/local-operator"


class BadTokenError(ValueError):
    pass


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (header.payload.signature), without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise BadTokenError("the bearer token is not a JWT (header.payload.signature)")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError as exc:
        raise BadTokenError(f"the bearer token's payload is not base64url JSON: {exc}") from exc
    if not isinstance(claims, dict):
        raise BadTokenError("the bearer token's payload is not a JSON object")
    # API Gateway hands every claim to the function as a string; arrays as "[a b]".
    return {k: f"[{' '.join(map(str, v))}]" if isinstance(v, list) else str(v) for k, v in claims.items()}


def unsigned_token(claims: dict[str, Any]) -> str:
    """A JWT with ``alg: none`` for the local server (which does not verify): tests and local use only."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def to_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    url = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # as API Gateway joins repeats
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        authorizer: dict[str, Any] = {"jwt": {"claims": unverified_claims(authorization[7:].strip()), "scopes": None}}
    else:
        authorizer = {"iam": {"userArn": LOCAL_OPERATOR_ARN, "userId": "local", "accountId": LOCAL_ACCOUNT_ID}}
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": "local",
            "authorizer": authorizer,
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body.decode("utf-8") if body else None,
        "isBase64Encoded": False,
    }


class LocalApiServer:
    """``with LocalApiServer(handler) as url:`` serves the handler on 127.0.0.1 (a free port)."""

    def __init__(self, handler: ApiHandler, port: int = 0) -> None:
        self._handler = handler
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._request_handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-alerts-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        invoke = self._handler

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = to_event(self.command, self.path, headers, body)
                except BadTokenError as exc:
                    self._answer(401, {"content-type": "application/json"}, json.dumps({"message": str(exc)}))
                    return
                response = invoke(event)
                self._answer(int(response["statusCode"]), response.get("headers") or {}, response.get("body") or "")

            def _answer(self, status: int, headers: dict[str, str], body: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints results
                return

        return Handler
