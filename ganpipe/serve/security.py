"""What keeps the server safe to run: loopback unless a token guards it, names in paths that can
only name things inside the run store, and a bearer token compared in constant time."""

from __future__ import annotations

import hmac
import ipaddress
import re

from ganpipe.errors import ConfigError

# Model names, versions, batch ids and style names as they appear in URLs: no separators, no
# leading dot, so no path parameter can climb out of its folder in the store.
TOKEN_COOKIE = "ganpipe_token"  # the studio's session cookie, set by signing in with the token
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,127}$")


def safe_name(value: str) -> bool:
    return bool(_SAFE.match(value)) and ".." not in value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Binding anywhere but the loopback interface needs ``serve.token``: otherwise anyone on
    the network could generate with, and curate, the team's models."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"serving on {host} would expose the API to the network without a token",
            where="serve.token",
            fix="set serve.token to an ${ENV_VAR} holding a long random secret, or serve on "
            "127.0.0.1",
        )


def token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())


def signed_in(request, token: str) -> bool:
    """Whether the request carries the studio's session cookie holding ``token``."""
    cookie = request.cookies.get(TOKEN_COOKIE)
    return bool(cookie) and token_matches(f"Bearer {cookie}", token)
