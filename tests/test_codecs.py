import dataclasses
import json
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict

from simple_websocket.codecs import Codec, JsonCodec, PydanticCodec
from simple_websocket.errors import DecodeError, EncodeError


class Trade(BaseModel):
    kind: Literal["trade"] = "trade"
    id: int
    price: float
    symbol: str


class Quote(BaseModel):
    kind: Literal["quote"] = "quote"
    bid: float
    ask: float


Event = Annotated[Trade | Quote, Field(discriminator="kind")]


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


def test_codecs_satisfy_the_protocol():
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(PydanticCodec(Trade), Codec)


@pytest.mark.parametrize(
    ("type_", "value", "wire"),
    [
        (
            Trade,
            Trade(id=1, price=2.5, symbol="X"),
            {"kind": "trade", "id": 1, "price": 2.5, "symbol": "X"},
        ),
        (Point, Point(1, 2), {"x": 1, "y": 2}),
        (Movie, {"title": "Alien", "year": 1979}, {"title": "Alien", "year": 1979}),
        (Event, Quote(bid=1.0, ask=2.0), {"kind": "quote", "bid": 1.0, "ask": 2.0}),
        (list[Point], [Point(1, 2), Point(3, 4)], [{"x": 1, "y": 2}, {"x": 3, "y": 4}]),
    ],
)
def test_pydantic_codec_round_trips_each_type_kind(type_, value, wire):
    codec = PydanticCodec(type_)
    data = codec.encode(value)
    assert isinstance(data, str)
    assert json.loads(data) == wire
    assert codec.decode(data) == value
    assert codec.decode(data.encode()) == value  # bytes frames too


def test_discriminated_union_picks_the_right_model():
    codec = PydanticCodec(Event)
    assert isinstance(codec.decode('{"kind": "trade", "id": 1, "price": 1, "symbol": "A"}'), Trade)
    assert isinstance(codec.decode('{"kind": "quote", "bid": 1, "ask": 2}'), Quote)
    with pytest.raises(DecodeError) as info:
        codec.decode('{"kind": "other"}')
    assert isinstance(info.value.error, ValidationError)
    assert info.value.__cause__ is info.value.error
    assert info.value.data == '{"kind": "other"}'


@pytest.mark.parametrize(
    "data", ["not json", "{", '{"id": "x", "price": 1, "symbol": "s"}', b"\xff\xfe"]
)
def test_pydantic_codec_decode_errors_carry_the_raw_message(data):
    with pytest.raises(DecodeError) as info:
        PydanticCodec(Trade).decode(data)
    assert info.value.data == data
    assert isinstance(info.value, ValueError)


def test_pydantic_codec_refuses_objects_of_the_wrong_type():
    codec = PydanticCodec(Trade)
    with pytest.raises(EncodeError) as info:
        codec.encode(Quote(bid=1, ask=2))
    assert isinstance(info.value, TypeError)
    with pytest.raises(TypeError):
        codec.encode({"id": 1, "price": 1.0, "symbol": "X"})


def test_binary_option_and_aliases():
    class Aliased(BaseModel):
        user_id: int = Field(alias="userId")
        note: str | None = None

    codec = PydanticCodec(Aliased, binary=True, exclude_none=True)
    data = codec.encode(Aliased(userId=5))
    assert data == b'{"userId":5}'
    assert codec.decode(data) == Aliased(userId=5)


def test_json_codec():
    codec = JsonCodec()
    assert codec.decode(codec.encode({"a": [1, 2]})) == {"a": [1, 2]}
    with pytest.raises(DecodeError):
        codec.decode("{nope")
    with pytest.raises(EncodeError):
        codec.encode({"a": object()})
    binary = JsonCodec(binary=True)
    assert binary.encode([1]) == b"[1]"
    custom = JsonCodec(dumps=lambda o: json.dumps(o, sort_keys=True), loads=json.loads)
    assert custom.encode({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(
    st.builds(
        Trade,
        id=st.integers(),
        price=st.floats(allow_nan=False, allow_infinity=False),
        symbol=st.text(),
    )
)
def test_any_trade_round_trips(trade):
    codec = PydanticCodec(Trade)
    assert codec.decode(codec.encode(trade)) == trade


@given(st.builds(Point, x=st.integers(), y=st.integers()), st.booleans())
def test_any_dataclass_round_trips(point, binary):
    codec = PydanticCodec(Point, binary=binary)
    assert codec.decode(codec.encode(point)) == point


@given(json_values)
def test_any_json_value_round_trips(value):
    codec = JsonCodec()
    assert codec.decode(codec.encode(value)) == value


# -- MsgspecCodec ------------------------------------------------------------------------

msgspec = pytest.importorskip("msgspec")


class MTrade(msgspec.Struct, tag="trade"):
    id: int
    price: float
    symbol: str


class MQuote(msgspec.Struct, tag="quote"):
    bid: float
    ask: float


def test_msgspec_codec_satisfies_the_protocol():
    from simple_websocket.codecs import MsgspecCodec

    assert isinstance(MsgspecCodec(MTrade), Codec)


@pytest.mark.parametrize(
    ("type_", "value", "wire"),
    [
        (MTrade, MTrade(1, 2.5, "X"), {"type": "trade", "id": 1, "price": 2.5, "symbol": "X"}),
        (MTrade | MQuote, MQuote(1.0, 2.0), {"type": "quote", "bid": 1.0, "ask": 2.0}),
        (Point, Point(1, 2), {"x": 1, "y": 2}),
        (Movie, {"title": "Alien", "year": 1979}, {"title": "Alien", "year": 1979}),
        (
            list[MTrade],
            [MTrade(1, 1.0, "A")],
            [{"type": "trade", "id": 1, "price": 1.0, "symbol": "A"}],
        ),
    ],
)
def test_msgspec_codec_round_trips_each_type_kind(type_, value, wire):
    from simple_websocket.codecs import MsgspecCodec

    codec = MsgspecCodec(type_)
    data = codec.encode(value)
    assert isinstance(data, str)
    assert json.loads(data) == wire
    assert codec.decode(data) == value
    assert codec.decode(data.encode()) == value  # bytes frames too


def test_msgspec_codec_binary_and_any():
    from simple_websocket.codecs import MsgspecCodec

    codec = MsgspecCodec(MTrade, binary=True)
    assert codec.encode(MTrade(1, 2.0, "A")) == b'{"type":"trade","id":1,"price":2.0,"symbol":"A"}'
    plain = MsgspecCodec()
    assert plain.decode('{"a": [1, null]}') == {"a": [1, None]}
    assert plain.encode({"a": 1}) == '{"a":1}'


@pytest.mark.parametrize("data", ["not json", '{"type": "trade", "id": "x"}', "[", b"\xff"])
def test_msgspec_codec_decode_errors_carry_the_raw_message(data):
    from simple_websocket.codecs import MsgspecCodec

    codec = MsgspecCodec(MTrade)
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.data == data
    assert isinstance(info.value.error, msgspec.DecodeError)
    assert info.value.__cause__ is info.value.error
    assert isinstance(info.value, ValueError)


def test_msgspec_codec_strict_mode():
    from simple_websocket.codecs import MsgspecCodec

    with pytest.raises(DecodeError) as info:
        MsgspecCodec(MTrade).decode('{"type": "trade", "id": "1", "price": 1, "symbol": "A"}')
    assert isinstance(info.value.error, msgspec.ValidationError)
    lax = MsgspecCodec(MTrade, strict=False)
    assert lax.decode('{"type": "trade", "id": "1", "price": 1, "symbol": "A"}').id == 1


def test_msgspec_codec_refuses_objects_it_cannot_send():
    from simple_websocket.codecs import MsgspecCodec

    codec = MsgspecCodec(MTrade)
    with pytest.raises(EncodeError) as info:
        codec.encode(MQuote(1.0, 2.0))
    assert isinstance(info.value, TypeError)
    assert "expected MTrade, got MQuote" in str(info.value)
    with pytest.raises(EncodeError):
        MsgspecCodec().encode(object())  # msgspec cannot encode it


def test_msgspec_codec_refuses_types_msgspec_cannot_decode():
    from simple_websocket.codecs import MsgspecCodec

    with pytest.raises(TypeError):
        MsgspecCodec(str | bytes)  # two str-like types in one union


def test_msgspec_codec_names_the_extra_when_msgspec_is_missing(monkeypatch):
    import builtins

    from simple_websocket.codecs import MSGSPEC_EXTRA, MsgspecCodec

    real_import = builtins.__import__

    def no_msgspec(name, *args, **kwargs):
        if name == "msgspec" or name.startswith("msgspec."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_msgspec)
    with pytest.raises(ImportError) as info:
        MsgspecCodec(MTrade)
    assert MSGSPEC_EXTRA in str(info.value)
    assert "simple-websocket[msgspec]" in str(info.value)
