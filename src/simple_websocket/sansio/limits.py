"""Default size limits, and how an option the user did not give is told apart.

simple-websocket 1.1 accepted messages of any size unless ``max_message_size`` was
set, and its entry points keep that default for uncompressed messages. A compressed
message is different: a few hundred KiB on the wire can inflate to gigabytes. So when
``max_message_size`` is not given, inflating a permessage-deflate message still stops
at :data:`MAX_INFLATED_SIZE` (the connection fails with 1009). Giving
``max_message_size`` explicitly, ``None`` included, sets both limits.
:func:`simple_websocket.serve`, new in 2.0, accepts at most
:data:`SERVE_MAX_MESSAGE_SIZE` per message unless told otherwise.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["MAX_INFLATED_SIZE", "SERVE_MAX_MESSAGE_SIZE", "UNSET", "Unset", "message_limits"]


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: The default of ``max_message_size`` where it keeps 1.1's meaning: no limit on
#: uncompressed messages, :data:`MAX_INFLATED_SIZE` on compressed ones.
UNSET: Final = Unset.UNSET

#: The largest a compressed message may inflate to when ``max_message_size`` was not
#: given (64 MiB).
MAX_INFLATED_SIZE: Final = 64 * 1024 * 1024

#: The default ``max_message_size`` of :func:`simple_websocket.serve` (1 MiB).
SERVE_MAX_MESSAGE_SIZE: Final = 1024 * 1024


def message_limits(max_message_size: int | Unset | None) -> tuple[int | None, int | None]:
    """Return ``(limit on every message, limit on an inflated message)`` in bytes.

    ``None`` means no limit.

    Raises:
        ValueError: ``max_message_size`` is negative.
        TypeError: ``max_message_size`` is not an integer, ``None`` or :data:`UNSET`.
    """
    if max_message_size is UNSET:
        return None, MAX_INFLATED_SIZE
    if max_message_size is None:
        return None, None
    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int):
        raise TypeError(
            "max_message_size must be an int (bytes) or None, "
            f"not {type(max_message_size).__name__}"
        )
    if max_message_size < 0:
        raise ValueError(f"max_message_size must be >= 0, not {max_message_size}")
    return max_message_size, max_message_size
