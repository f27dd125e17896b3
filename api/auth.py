"""Bearer-token authentication, compared in constant time against every configured token."""

from __future__ import annotations

import hmac

from flask import current_app, request

from api.errors import ApiError


def token_matches(presented: str, tokens: list[str]) -> bool:
    presented_bytes = presented.encode()
    matched = False
    for token in tokens:
        # No early exit: the time taken does not tell which token (or whether any) matched.
        matched |= hmac.compare_digest(presented_bytes, token.encode())
    return matched


def require_token() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    tokens = current_app.extensions["proxmoxwp"].tokens
    if scheme.lower() != "bearer" or not presented.strip() or not token_matches(presented.strip(), tokens):
        raise ApiError(401, "unauthorized", "A valid bearer token is required.")
