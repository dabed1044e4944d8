"""Message codecs: turn objects into WebSocket messages and back.

A codec has two methods: ``encode(obj) -> str | bytes`` and ``decode(data) -> obj``.
:class:`JsonCodec` uses the standard library's ``json`` (or any ``dumps``/``loads``
pair); :class:`PydanticCodec` validates against any type a ``pydantic.TypeAdapter``
accepts (models, dataclasses, TypedDicts, ``Annotated`` discriminated unions, lists
of those), decoding straight from the frame's ``str``/``bytes`` with
``validate_json`` (no intermediate ``dict``). :class:`MsgspecCodec` does the same
with msgspec (an optional extra, ``simple-websocket[msgspec]``) for ``msgspec.Struct``
types and the other types msgspec decodes, several times faster than pydantic.

Decoding failures raise :class:`~simple_websocket.errors.DecodeError` carrying the
raw message; encoding failures raise :class:`~simple_websocket.errors.EncodeError`
(a ``TypeError``) before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, Protocol, cast, overload, runtime_checkable

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError
from typing_extensions import TypeVar, is_typeddict

from .errors import DecodeError, EncodeError

__all__ = ["MSGSPEC_EXTRA", "Codec", "JsonCodec", "MsgspecCodec", "PydanticCodec"]

#: How to install what :class:`MsgspecCodec` needs (named by its ``ImportError``).
MSGSPEC_EXTRA = 'pip install "simple-websocket[msgspec]"'

T = TypeVar("T")
#: What a codec decodes to; a bare ``Codec`` is a ``Codec[Any]``.
T_co = TypeVar("T_co", covariant=True, default=Any)


@runtime_checkable
class Codec(Protocol[T_co]):
    """What a codec provides.

    ``Codec[T]`` is a codec whose ``decode`` returns a ``T`` (for type checkers;
    a bare ``Codec`` decodes to ``Any``).
    """

    def encode(self, obj: Any) -> str | bytes:
        """Return the message (``str`` for a text frame, ``bytes`` for binary).

        Raises:
            EncodeError: ``obj`` cannot be encoded.
        """
        ...  # pragma: no cover

    def decode(self, data: str | bytes) -> T_co:
        """Return the object a received message stands for.

        Raises:
            DecodeError: The message is not valid for this codec.
        """
        ...  # pragma: no cover


class JsonCodec:
    """JSON with the standard library, or any compatible ``dumps``/``loads``.

    Args:
        dumps: Serialises an object to ``str`` (or ``bytes``).
        loads: Parses ``str`` or ``bytes``.
        binary: Send binary frames (UTF-8 JSON) instead of text frames.
    """

    def __init__(
        self,
        *,
        dumps: Callable[[Any], str | bytes] = json.dumps,
        loads: Callable[[str | bytes], Any] = json.loads,
        binary: bool = False,
    ) -> None:
        self._dumps = dumps
        self._loads = loads
        self.binary = binary

    def encode(self, obj: Any) -> str | bytes:
        """Serialise ``obj`` to JSON.

        Raises:
            EncodeError: ``dumps`` failed (for instance a non-serialisable value).
        """
        try:
            data = self._dumps(obj)
        except (TypeError, ValueError) as exc:
            raise EncodeError(obj, exc) from exc
        if self.binary:
            return data.encode("utf-8") if isinstance(data, str) else data
        return data.decode("utf-8") if isinstance(data, bytes) else data

    def decode(self, data: str | bytes) -> Any:
        """Parse JSON.

        Raises:
            DecodeError: The message is not valid JSON.
        """
        try:
            return self._loads(data)
        except (ValueError, TypeError) as exc:
            raise DecodeError(data, exc) from exc


class PydanticCodec(Generic[T]):
    """JSON validated and serialised by pydantic for one type.

    ``PydanticCodec(Tick)`` is a ``PydanticCodec[Tick]`` to type checkers; a type
    that is not a class (an ``Annotated`` union, for instance) gives a
    ``PydanticCodec[Any]``.

    Args:
        type_: Any type a ``pydantic.TypeAdapter`` accepts.
        binary: Send binary frames (UTF-8 JSON) instead of text frames.
        by_alias: Serialise fields by their alias.
        exclude_none: Leave out fields whose value is ``None``.
        strict: Validate incoming messages in pydantic's strict mode.
    """

    @overload
    def __init__(
        self: PydanticCodec[T],
        type_: type[T],
        *,
        binary: bool = False,
        by_alias: bool = True,
        exclude_none: bool = False,
        strict: bool | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: PydanticCodec[Any],
        type_: object,
        *,
        binary: bool = False,
        by_alias: bool = True,
        exclude_none: bool = False,
        strict: bool | None = None,
    ) -> None: ...

    def __init__(
        self,
        type_: Any,
        *,
        binary: bool = False,
        by_alias: bool = True,
        exclude_none: bool = False,
        strict: bool | None = None,
    ) -> None:
        self.type = type_
        self.adapter: TypeAdapter[T] = TypeAdapter(type_)
        self.binary = binary
        self.by_alias = by_alias
        self.exclude_none = exclude_none
        self.strict = strict
        # pydantic serialises an instance of another model without complaint: check
        # the class first when the type is one (TypedDicts are plain dicts).
        self._instance_of: type | None = (
            type_
            if isinstance(type_, type) and type_ is not Any and not is_typeddict(type_)
            else None
        )

    def encode(self, obj: object) -> str | bytes:
        """Serialise ``obj``, which must be an instance of the codec's type.

        The check is made at run time: the parameter is an ``object`` so that type
        checkers infer a codec's type from what it decodes only.

        Raises:
            EncodeError: ``obj`` does not match the type (nothing is sent).
        """
        if self._instance_of is not None and not isinstance(obj, self._instance_of):
            raise EncodeError(
                obj, TypeError(f"expected {self._instance_of.__name__}, got {type(obj).__name__}")
            )
        try:
            data = self.adapter.dump_json(
                cast("T", obj),
                by_alias=self.by_alias,
                exclude_none=self.exclude_none,
                warnings="error",
            )
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise EncodeError(obj, exc) from exc
        return data if self.binary else data.decode("utf-8")

    def decode(self, data: str | bytes) -> T:
        """Validate a JSON message into the codec's type.

        Raises:
            DecodeError: The message is not JSON or fails validation; ``error`` is
                the ``pydantic.ValidationError``.
        """
        try:
            # The adapter's validator directly: TypeAdapter.validate_json only adds a
            # Python call around it, which is a noticeable part of a small message.
            value: T = self.adapter.validator.validate_json(data, strict=self.strict)
        except ValidationError as exc:
            raise DecodeError(data, exc) from exc
        return value


def _import_msgspec() -> Any:
    """The ``msgspec`` module, or an ``ImportError`` naming the extra to install."""
    try:
        import msgspec
    except ImportError as exc:
        raise ImportError(f"MsgspecCodec needs msgspec: {MSGSPEC_EXTRA}") from exc
    return msgspec


class MsgspecCodec(Generic[T]):
    """JSON decoded, validated and encoded by msgspec for one type.

    ``MsgspecCodec(Tick)`` is a ``MsgspecCodec[Tick]`` to type checkers, like
    :class:`PydanticCodec`; ``type_`` is anything ``msgspec.json.Decoder`` accepts
    (a ``msgspec.Struct``, a dataclass, a ``TypedDict``, a union of tagged
    structs, ``list[X]``...). Decoding goes straight from the frame's ``str`` or
    ``bytes`` to the object, in one call. Use it with a typed channel:
    ``ws.typed(Tick, codec=MsgspecCodec(Tick))``.

    msgspec is an optional dependency: ``pip install "simple-websocket[msgspec]"``.

    Args:
        type_: The type of decoded messages (``Any``: plain JSON values).
        binary: Send binary frames (UTF-8 JSON) instead of text frames.
        strict: msgspec's strict mode (the default): no conversion of strings to
            numbers and the like. ``False`` allows those conversions.

    Raises:
        ImportError: msgspec is not installed (the message names the extra).
        TypeError: msgspec cannot decode into ``type_``.
    """

    @overload
    def __init__(
        self: MsgspecCodec[T], type_: type[T], *, binary: bool = False, strict: bool = True
    ) -> None: ...

    @overload
    def __init__(
        self: MsgspecCodec[Any], type_: object = Any, *, binary: bool = False, strict: bool = True
    ) -> None: ...

    def __init__(self, type_: Any = Any, *, binary: bool = False, strict: bool = True) -> None:
        msgspec = _import_msgspec()
        self.type = type_
        self.binary = binary
        self.strict = strict
        self._decode: Callable[[str | bytes], T] = msgspec.json.Decoder(type_, strict=strict).decode
        self._encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode
        self._decode_error: type[Exception] = msgspec.DecodeError
        self._encode_errors: tuple[type[Exception], ...] = (
            msgspec.EncodeError,
            TypeError,
            ValueError,
            OverflowError,
        )
        # As PydanticCodec: only instances of the type are sent, when it is a class.
        self._instance_of: type | None = (
            type_
            if isinstance(type_, type) and type_ is not Any and not is_typeddict(type_)
            else None
        )

    def encode(self, obj: object) -> str | bytes:
        """Serialise ``obj``, which must be an instance of the codec's type.

        Raises:
            EncodeError: ``obj`` does not match the type or msgspec cannot encode
                it (nothing is sent).
        """
        if self._instance_of is not None and not isinstance(obj, self._instance_of):
            raise EncodeError(
                obj, TypeError(f"expected {self._instance_of.__name__}, got {type(obj).__name__}")
            )
        try:
            data = self._encode(obj)
        except self._encode_errors as exc:
            raise EncodeError(obj, exc) from exc
        return data if self.binary else data.decode("utf-8")

    def decode(self, data: str | bytes) -> T:
        """Decode and validate a JSON message into the codec's type.

        Raises:
            DecodeError: The message is not JSON or does not match the type;
                ``error`` is msgspec's ``DecodeError`` (a ``ValidationError`` for
                a mismatch).
        """
        try:
            return self._decode(data)
        except self._decode_error as exc:
            raise DecodeError(data, exc) from exc
