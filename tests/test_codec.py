"""The JSON codec: the fast path accepts exactly what the exact path accepts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import codec
from service.problems import RequestError

leaf = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


def rectangular(depth: int) -> st.SearchStrategy[Any]:
    if depth == 0:
        return st.floats(-1e300, 1e300, allow_nan=False)
    return st.integers(1, 4).flatmap(lambda n: st.lists(rectangular(depth - 1), min_size=n, max_size=n))


nested = st.recursive(leaf, lambda children: st.lists(children, max_size=4), max_leaves=20)
arrays = st.one_of(st.integers(1, 3).flatmap(rectangular), nested)


def outcome(data: dict[str, Any]) -> tuple[Any, ...]:
    """What the service makes of x: its shape and bytes, or the error it names."""
    try:
        arr = codec.to_array(data["x"], "x")
    except RequestError as exc:
        return ("error", exc.detail)
    return ("array", arr.shape, arr.tobytes())


@settings(max_examples=400, deadline=None)
@given(x=arrays, extra=st.sampled_from(["", ', "params": {"alpha": 1}', ', "activation": "[relu]"']))
def test_fast_path_agrees_with_the_exact_path(x: Any, extra: str) -> None:
    body = (f'{{"x": {json.dumps(x)}{extra}}}').encode()
    fast = codec.load_json_fast(body, min_bytes=0)
    if fast is None:
        return  # declined: the exact path decides
    envelope, arrays = fast
    slow = codec.load_json(body)
    assert outcome(envelope | arrays) == outcome(slow)
    assert {k: v for k, v in envelope.items() if k != "x"} == {k: v for k, v in slow.items() if k != "x"}


def test_fast_path_takes_ordinary_requests() -> None:
    # The property above must not pass vacuously: plain rectangular bodies go fast.
    for body in (b'{"x": [1, 2.5, -3e-5]}', b'{"x": [[1, 2], [3, 4]], "params": {"a": 1}}', b'{"x": 7}'):
        assert codec.load_json_fast(body, min_bytes=0) is not None


def test_small_bodies_take_the_exact_path() -> None:
    # Below FAST_MIN_BYTES orjson is faster than simdjson's per-document setup.
    assert codec.load_json_fast(b'{"x": [1, 2]}') is None
    assert codec.load_json_fast(b'{"x": [%s]}' % b",".join([b"1.5"] * 2000)) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": [1, [2]]}',
        b'{"x": [[1, 2], [3, 4, 5], [6]]}',
        b'{"x": [[1, 2], [3, [4]]]}',
        b'{"x": [1, true]}',
        b'{"x": [1e999]}',
        b'{"x": [1, NaN]}',
        b'{"x": []}',
        b'{"x": [1], "activation": "[x"}',
        b'{"x": [1], "other": [1]}',
        b"[1, 2]",
    ],
)
def test_fast_path_declines_what_it_cannot_prove(body: bytes) -> None:
    assert codec.load_json_fast(body, min_bytes=0) is None


def test_fast_path_reads_a_large_matrix_without_python_floats() -> None:
    x = np.random.default_rng(1).standard_normal((300, 200))
    body = json.dumps({"activation": "relu", "x": x.tolist(), "grad": x[:, ::-1].tolist()}).encode()
    fast = codec.load_json_fast(body, min_bytes=0)
    assert fast is not None
    envelope, arrays = fast
    assert envelope == {"activation": "relu"}
    np.testing.assert_array_equal(arrays["x"], x)
    np.testing.assert_array_equal(arrays["grad"], x[:, ::-1])


@pytest.mark.parametrize("shape", [(200_000,), (3, 100_000), (100_000, 3), (1, 1, 200_000), (2, 70_000, 2)])
def test_serialising_in_pieces_writes_the_same_bytes(shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(2).standard_normal(shape)
    payload = {"activation": "relu", "y": arr, "shape": list(shape)}
    assert arr.size > codec.SERIALIZE_PIECE
    assert codec.dumps(payload) == orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


LARGE = 200_000  # numbers: a body above 1 MiB takes the segmented path


def _exact_outcome(body: bytes) -> tuple[Any, ...]:
    try:
        return outcome(codec.load_json(body))
    except RequestError as exc:  # malformed JSON: a 400 on either path
        return ("error", exc.detail)


def _outcome_of(body: bytes) -> tuple[Any, ...]:
    fast = codec.load_json_fast(body)
    return _exact_outcome(body) if fast is None else outcome(fast[0] | fast[1])


def test_large_flat_array_is_parsed_in_segments_exactly() -> None:
    x = np.random.default_rng(3).standard_normal(LARGE) * 1e3
    body = orjson.dumps({"activation": "relu", "x": x, "params": {"a": 1}}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(body) > 1 << 20
    segmented = codec._fast_flat_segments(body, codec.MAX_KEYS << 40)
    assert segmented is not None
    envelope, arrays = segmented
    assert envelope == {"activation": "relu", "params": {"a": 1}}
    assert arrays["x"].tobytes() == x.tobytes()


@pytest.mark.parametrize(
    "tail",
    [b",true", b',"a"', b",null", b",,1", b",", b",[1]", b",1e999", b",NaN", b', "]"'],
    ids=["bool", "string", "null", "empty", "trailing-comma", "nested", "overflow", "nan", "bracket-string"],
)
def test_large_bodies_agree_with_the_exact_path(tail: bytes) -> None:
    numbers = b",".join([b"1.25"] * LARGE)
    body = b'{"activation": "relu", "x": [' + numbers + tail + b"]}"
    assert _outcome_of(body) == _exact_outcome(body)
    body = body.replace(b"[1.25,", b"[" + b"1.25," * (LARGE // 4), 1)
    assert len(body) > codec.EXACT_MAX_BYTES
    # Served, such a body is refused with a 4xx that names the field, without the exact path.
    with pytest.raises(RequestError) as refused:
        codec.load(body, max_elements=10**9)
    assert refused.value.status in (400, 422)
    assert refused.value.errors[0][0] in ("x", "body")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"x": [1], "x": [2, 3]}', "x"),
        (b'{"x": [1], "\\u0078": [2, 3]}', "x"),
        (b'{"x": [1], "params": {"a": 1, "a": 2}}', "params.a"),
        (b'{"activation": "relu", "activation": "gelu", "x": [1]}', "activation"),
        (
            b'{"x": [1], "target": {"activation": "softplus", "params": {"beta": 1, "beta": 2}}}',
            "target.params.beta",
        ),
        (b'{"x": [1], "a": {"b": {"c": {"d": 1, "d": 2}}}}', "a.b.c.d"),
    ],
)
@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_a_repeated_key_is_refused_by_both_paths(body: bytes, path: str, size: str) -> None:
    if size == "large":  # over 1 MiB: the fast path's segments
        body = body[:-1] + b', "pad": [' + b",".join([b"0"] * LARGE) + b"]}"
        assert len(body) > codec.EXACT_MAX_BYTES // 3
    if size == "medium":  # 4 KiB to 1 MiB, x the only array: simdjson with the reused parser
        body = body.replace(b'"x": [1]', b'"x": [' + b",".join([b"1"] * 3000) + b"]", 1)
        assert codec.FAST_MIN_BYTES < len(body) < codec.EXACT_MAX_BYTES
    with pytest.raises(RequestError) as refused:
        codec.load(body, max_elements=10**9)
    assert refused.value.status == 422
    assert "twice" in refused.value.detail
    assert refused.value.errors[0][0] == path  # the whole path, not the key alone


@pytest.mark.parametrize("elements", [3, 3000, 300_000])
def test_objects_three_levels_deep_are_kept_at_every_size(elements: int) -> None:
    # /fit's target.params: the exact path, simdjson with the reused parser, and one flat array
    # over 1 MiB (segments) must all accept it, and keep every key.
    x = b",".join([b"0.5"] * elements)
    body = (
        b'{"activation": "silu", "x": ['
        + x
        + b'], "target": {"activation": "softplus", "params": {"beta": 2}}}'
    )
    data = codec.load(body, max_elements=10**9)
    assert data["target"] == {"activation": "softplus", "params": {"beta": 2}}
    assert len(data["x"]) == elements


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"activation": "relu", "x": [1]}'.encode("utf-16"), 400),
        ('{"activation": "relu", "x": [1]}'.encode("utf-32"), 400),
        (b'{"activation": "relu", "x": [1], "params": {"\\udc00": 1}}', 400),
        (b'{"x": [1], "params": {' + b",".join(b'"p%d": 1' % i for i in range(100)) + b"}}", 422),
    ],
    ids=["utf-16", "utf-32", "lone-surrogate", "many-keys"],
)
def test_bodies_that_are_not_plain_utf8_json_objects_are_refused(body: bytes, status: int) -> None:
    with pytest.raises(RequestError) as refused:
        codec.load(body, max_elements=10**9)
    assert refused.value.status == status


def test_the_element_limit_is_checked_before_the_numbers_are_read() -> None:
    body = b'{"activation": "relu", "x": [' + b",".join([b"0.5"] * LARGE) + b"]}"
    with pytest.raises(RequestError) as refused:
        codec.load(body, max_elements=1000)
    assert refused.value.status == 413
    assert f"has {LARGE} elements" in refused.value.detail


@pytest.mark.parametrize("size", [0, 10, 1023, 1024, 5000, (1 << 18) + 3, 3 * (1 << 18)])
def test_counting_a_byte_agrees_with_bytes_count(size: int) -> None:
    body = bytes(np.random.default_rng(size).integers(40, 50, size, dtype=np.uint8))
    assert codec.count_byte(body, b",") == body.count(b",")
    assert codec.count_byte(bytearray(body), b"[") == body.count(b"[")
