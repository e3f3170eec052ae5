"""What a storage failure becomes: a ``StoreError`` naming the action and the place.

The flows retry what may succeed later (network trouble, throttling, 5xx answers:
``StoreUnavailable``) and stop on the rest, so the line between the two is drawn once, here
(docs/architecture.md, "The store"). Library exceptions are matched by class name and module, so
none of the storage libraries has to be installed for this module to import.
"""

from __future__ import annotations

import contextlib
import errno
import traceback
from collections.abc import Callable, Iterator

from ganpipe.errors import StoreError


class StoreIOError(StoreError, OSError):
    """The storage refused or failed an operation. Also an ``OSError``, so code that handles
    file errors keeps working."""

    transient = False


class StoreUnavailable(StoreIOError):
    """The store could not be reached (connection refused or reset, timeout, throttling, 5xx):
    the same operation may well succeed later, so flows retry it."""

    transient = True


class StoreDataError(StoreError, ValueError):
    """A file in the store does not hold what it should (an array that needs unpickling, a
    torn file). Also a ``ValueError``, as the parsers raise."""


_TRANSIENT_ERRNOS = {
    errno.EBUSY, errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
    errno.EAGAIN, errno.EREMOTEIO, errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ENETDOWN,
}  # fmt: skip
# Library exception classes (matched by name: none of these libraries need be installed)
_TRANSIENT_NAMES = {
    "ConnectionError",  # botocore's (EndpointConnectionError, ConnectTimeoutError...)
    "HTTPClientError",  # botocore: ConnectionClosedError, ReadTimeoutError
    "ResponseStreamingError",
    "IncompleteReadError",
    "ClientConnectionError",  # aiohttp: ServerDisconnectedError, ClientOSError...
    "ClientPayloadError",
    "ProtocolError",  # urllib3
}
_STORAGE_LIBRARIES = {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "urllib3", "gcsfs",
                      "adlfs", "azure", "google"}  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Network trouble, throttling or a server-side error, here or in the exception's causes."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StoreError):
            return bool(getattr(exc, "transient", False))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        if {c.__name__ for c in type(exc).__mro__} & _TRANSIENT_NAMES:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def from_storage(exc: Exception) -> bool:
    """OS errors, the storage libraries' own errors, and what those libraries raise on bad
    options (a TypeError from deep inside a client); anything else is a bug to show as is."""
    if isinstance(exc, (OSError, TimeoutError)):
        return True
    module = type(exc).__module__.split(".", 1)[0]
    if module in _STORAGE_LIBRARIES or is_transient(exc):
        return True
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    innermost = frames[-1].f_globals.get("__name__", "") if frames else ""
    return isinstance(exc, (TypeError, ValueError)) and (
        innermost.split(".", 1)[0] in _STORAGE_LIBRARIES
    )


def short(exc: BaseException) -> str:
    """One line naming an exception, for messages: storage errors can run to pages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


@contextlib.contextmanager
def storage_errors(
    action: str, place: Callable[[], str], *, missing_is_error: bool = False
) -> Iterator[None]:
    """Storage failures as ``StoreError``s naming ``action`` and ``place()`` (computed only on
    failure); a missing file is left to the caller, which knows whether that is an error (for a
    write it is: the bucket is missing)."""
    try:
        yield
    except FileNotFoundError as exc:
        if not missing_is_error:
            raise
        raise StoreIOError(
            f"cannot {action} {place()}: the bucket or folder does not exist ({short(exc)})",
            where="store.root",
            fix="create the bucket, or point store.root at one that exists",
        ) from exc
    except (FileExistsError, StoreError):
        raise
    except Exception as exc:
        if not from_storage(exc):
            raise
        raise _classified(exc, action, place()) from exc


def _classified(exc: Exception, action: str, where: str) -> StoreIOError:
    if is_transient(exc):
        return StoreUnavailable(
            f"the run store could not be reached to {action} {where} ({short(exc)})",
            where="store.root",
            fix="check that the endpoint is up and reachable (store.storage_options "
            "endpoint_url, network); the flows retry such failures, a rerun resumes",
        )
    fix = (
        "check the credentials and permissions for store.root"
        if isinstance(exc, PermissionError)
        else "check store.root and store.storage_options (bucket, options, free space)"
    )
    return StoreIOError(f"cannot {action} {where}: {short(exc)}", where="store.root", fix=fix)
