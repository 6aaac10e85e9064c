"""A ClientApp mod that turns any exception of the handlers into an error reply with a code and a fixed reason.

Flower turns an exception raised in a ClientApp into an error reply whose reason is ``str(exception)``
(``flwr/supernode/runtime/run_clientapp.py``, ``flwr/server/superlink/fleet/vce/vce_api.py``), and a FedHydra
exception names what went wrong: a user id ("user ... is a test user"), a store path, a value. :func:`error_mod` sits
inside the privacy audit (:mod:`client.audit`) and outside everything else: it catches every exception and replies
``Error(code, reason)`` with the code and the fixed reason of :data:`shared.protocol.ERROR_REPLIES` for the
exception's type, never its text. The exception itself (type, text and traceback) is logged on the device only
(logger ``client.replies``). The audit records the error reply as it leaves, and the server counts it as a failed
client as it counted Flower's.

Example:
    >>> from shared.errors import WrongRole
    >>> code = error_code(WrongRole("user alice is a test user and does not train"))
    >>> code, ERROR_REPLIES[code][1]  # what the reply carries: no user, no path
    (105, "this node's role does not do what the message asks")
    >>> error_code(KeyError("store/u1/meta.json"))
    100
"""

from __future__ import annotations

import logging

from flwr.app import Context, Error, Message

from client.store import StoreError
from shared import errors
from shared.protocol import ERROR_FAILED, ERROR_REPLIES

__all__ = ["error_mod", "error_code"]

_LOG = logging.getLogger("client.replies")

_CLASSES: dict[str, type[BaseException]] = {
    **{name: getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)},
    "StoreError": StoreError,
    "Exception": Exception,
}


def error_code(exc: BaseException) -> int:
    """The code of :data:`shared.protocol.ERROR_REPLIES` for this exception: its first class the exception is an
    instance of, else :data:`shared.protocol.ERROR_FAILED`."""
    for code, (name, _) in ERROR_REPLIES.items():
        if isinstance(exc, _CLASSES[name]):
            return code
    return ERROR_FAILED


def error_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Call the next handler; any exception becomes an error reply with a code and a fixed reason (see the module
    docstring)."""
    try:
        return call_next(msg, ctx)
    except Exception as exc:  # noqa: BLE001 - every failure must leave as a fixed reason, never as its text
        code = error_code(exc)
        _LOG.warning(
            "message %s failed (error reply %d): %s: %s",
            msg.metadata.message_type,
            code,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, errors.FedHydraError),
        )
        return Message(Error(code=code, reason=ERROR_REPLIES[code][1]), reply_to=msg)
