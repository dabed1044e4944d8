from collections.abc import Callable
from typing import Any

from typing_extensions import Buffer

def apply_mask(data: Buffer, key: Buffer, /) -> bytes: ...
def mask_into(buffer: Buffer, start: int, key: Buffer, end: int | None = None, /) -> None: ...
def parse_small(
    buf: bytes,
    i: int,
    masked: bool,
    small: int,
    messages: list[str | bytes],
    max_messages: int,
    /,
) -> int: ...
def build_frame(first: int, payload: str | Buffer, key: Buffer | None, /) -> bytes: ...
def bind_lane(
    connection: type,
    session: type,
    protocol: type,
    inbox: type,
    deque: type,
    open_state: object,
    open_called: int,
    /,
) -> None: ...
def send_lane(connection: Any, data: Any, /) -> bool: ...

class Reader:
    _on_data: Callable[[bytes], object] | None
    _on_direct: Callable[[int], object] | None
    _lender: Any
    _lane: Any
    def _use_buffer(self, view: memoryview, /) -> None: ...
    def get_buffer(self, sizehint: int, /) -> memoryview: ...
    def buffer_updated(self, nbytes: int, /) -> None: ...
