"""One-click login to a site's WordPress: the key each site holds, and the single-use links signed with it.

A site's login key is derived from the API's secret material and the site's identity (service id and subdomain),
so the API stores nothing per site that would log in: a link is signed when the customer asks and exists only in
that answer. The site's must-use plugin (roles/wordpress/templates/proxmoxwp-login.php.j2) checks a link: its
signature with the key, its expiry, that it was never used before (its nonce is recorded in the site's database),
and that it names the site's administrator. A key's id (a hash of it, never the key) tells the API whether the
site holds the key it would sign with now: a site made before one-click login, restored from an older backup, or
an API whose secret material changed, gets the key again through a login_setup job.

A link: `<site>/wp-login.php?action=proxmoxwp-login&token=<claims>.<signature>`, both parts base64url without
padding; the claims are JSON `{"u": login, "e": expiry (Unix seconds), "n": nonce}`; the signature is
HMAC-SHA256 of the claims' base64url text with the site's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

from api.jobs.secrets import SecretBox
from api.models import Service

LOGIN_ACTION = "proxmoxwp-login"


def site_key(box: SecretBox, service: Service) -> bytes:
    """The login key of the service's site: the same for as long as the site and the API's secret material are."""
    return box.derive(f"wordpress-login:{service.service_id}:{service.subdomain}")


def key_id(key: bytes) -> str:
    """What the API records of a key a site was given: enough to compare, nothing to sign with."""
    return hashlib.sha256(b"proxmoxwp login key id\0" + key).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(key: bytes, login: str, lifetime: int, now: float | None = None) -> tuple[str, datetime]:
    """A single-use token for `login`, valid for `lifetime` seconds, and when it expires."""
    expires = int(now if now is not None else time.time()) + lifetime
    claims = _b64(
        json.dumps({"u": login, "e": expires, "n": secrets.token_urlsafe(16)}, separators=(",", ":")).encode()
    )
    signature = _b64(hmac.new(key, claims.encode(), hashlib.sha256).digest())
    return f"{claims}.{signature}", datetime.fromtimestamp(expires, UTC)


def link(site_url: str, signed: str) -> str:
    """The address that logs in: the site's own login page, which the plugin answers for this action."""
    return f"{site_url.rstrip('/')}/wp-login.php?{urlencode({'action': LOGIN_ACTION, 'token': signed})}"
