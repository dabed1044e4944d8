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
