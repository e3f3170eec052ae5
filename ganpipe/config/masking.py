"""Secrets in configs: masked wherever a config is shown or saved, named by ``${ENV_VAR}``.

A config is copied into saved ``config.yaml`` files, flow parameters and logs, so values under
secret-looking keys are masked there, and credentials can instead be given as environment
variable references that are resolved only at the moment they are used.
"""

from __future__ import annotations

import re
from typing import Any

from ganpipe.errors import ConfigError

# The rule for secret-looking option names, case-insensitive, at any depth: a name that
# contains one of these words (so ``aws_secret_access_key``, ``sas_token``, ``X-Api-Key`` and
# ``Authorization`` under ``headers`` all count), or is exactly one of the short names. It
# covers the credential options of the fsspec backends users configure: s3fs (key, secret,
# token, aws_secret_access_key, aws_session_token), gcsfs (token, a path or a service-account
# mapping), adlfs (account_key, sas_token, connection_string, client_secret, credential),
# HTTP (headers: Authorization, Cookie, X-Api-Key), FTP/SFTP (password, passwd, passphrase,
# pkey) and WebDAV/SMB (password, auth).
_SECRET_WORDS = (
    "secret", "password", "passwd", "passphrase", "token", "credential", "apikey", "api_key",
    "account_key", "access_key", "private_key", "connection_string", "authorization", "cookie",
    "signature",
)  # fmt: skip
_SECRET_NAMES = {"key", "pwd", "pkey", "sas", "sig", "auth", "bearer"}


def is_secret_key(name: Any) -> bool:
    """Whether an option's name says it holds a credential (the rule above)."""
    text = str(name).lower().replace("-", "_").strip()
    return text in _SECRET_NAMES or any(word in text for word in _SECRET_WORDS)


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def redact(data: Any) -> Any:
    """Mask values under secret-looking keys (``secret``, ``key``, ``token``...), except
    ``${ENV_VAR}`` references, which name a secret without holding it, and unset values
    (``null`` holds no secret, and masking it would make a saved config invalid)."""
    if isinstance(data, dict):
        return {
            k: "***" if is_secret_key(k) and v is not None and not _is_env_ref(v) else redact(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def masked_secrets(data: Any, path: str = "") -> list[str]:
    """Key paths under secret-looking keys that hold the mask ``***`` instead of a value: a
    config that went through ``redact`` (a saved config, stored flow parameters)."""
    if isinstance(data, dict):
        found = []
        for k, v in data.items():
            key = f"{path}.{k}" if path else str(k)
            if is_secret_key(k) and v == "***":
                found.append(key)
            else:
                found += masked_secrets(v, key)
        return found
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in masked_secrets(v, f"{path}[{i}]")]
    return []


def _is_env_ref(value: Any) -> bool:
    return isinstance(value, str) and bool(_ENV_REF.match(value))


def resolve_env_refs(options: dict[str, Any], where: str) -> dict[str, Any]:
    """Replace ``${ENV_VAR}`` values with the variable's value, so configs (and everything they
    are copied into) can name credentials without containing them."""
    import os

    resolved: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            resolved[key] = resolve_env_refs(value, f"{where}.{key}")
        elif _is_env_ref(value):
            name = _ENV_REF.match(value).group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{where}.{key} refers to the environment variable {name}, which is not set",
                    where=f"{where}.{key}",
                    fix=f"export {name}=... before running",
                )
            resolved[key] = os.environ[name]
        else:
            resolved[key] = value
    return resolved
