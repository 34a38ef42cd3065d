"""The link codec for drawn and uploaded data (playground/linkdata.py): round trips within the documented
bound, the size limits, URL safety, and refusal of anything damaged with LinkDataError alone."""

import base64
import json
import struct
import tracemalloc
import zlib
from urllib.parse import parse_qs, quote, urlencode

import numpy as np
import pytest

from playground.datasets import parse_strokes, points_from_strokes
from playground.linkdata import (
    MAX_LINK_CHARS,
    MAX_LINK_POINTS,
    LinkDataError,
    decode_points,
    decode_strokes,
    describe_left_out,
    encode_points,
    encode_strokes,
    fits_in_link,
)

EPS = np.finfo(np.float64).eps
pytestmark = pytest.mark.filterwarnings("error")  # a division by zero or an overflow inside the codec fails


def _bound(x: np.ndarray) -> np.ndarray:
    """The documented error bound per column: half a step of the column's range, plus float64 rounding."""
    return np.ptp(x, 0) / 65535 / 2 * (1 + 1e-9) + 4 * EPS * np.abs(x).max(0)


def _forge(tag: str, head: bytes, raw_z: bytes) -> str:
    """A value with a valid CRC around any header and compressed bytes (a crafted link)."""
    body = head + raw_z
    crc = struct.pack("<I", zlib.crc32(tag.encode() + body))
    return f"{tag}." + base64.urlsafe_b64encode(body + crc).decode().rstrip("=")


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e-6, 0.0), (1.0, 1e6), (1e-6, 1e6), (1e6, -3e6),
                                          (1e-300, 0.0), (1e300, 0.0), (3.0, -1e-3)])
def test_points_round_trip_within_the_bound(scale, offset):
    rng = np.random.default_rng(1)
    x = offset + scale * rng.standard_normal((700, 2)) * [1.0, 0.25]
    y = decode_points(encode_points(x))
    assert y.shape == x.shape and y.dtype == np.float64
    assert (np.abs(y - x) <= _bound(x)).all()
    assert (y.min(0) == x.min(0)).all() and (y.max(0) == x.max(0)).all()  # the box's corners come back exactly


def test_the_bound_is_half_a_step_and_it_is_reached():
    x = np.random.default_rng(2).random((2000, 2)) * [10.0, 0.001]
    err = np.abs(decode_points(encode_points(x)) - x).max(0)
    step = np.ptp(x, 0) / 65535
    assert (err <= step / 2 * (1 + 1e-9)).all() and (err > step / 2 * 0.99).all()


def test_a_single_point_equal_points_and_a_flat_column():
    one = np.array([[3.25, -1e6]])
    assert np.array_equal(decode_points(encode_points(one)), one)
    same = np.full((50, 2), 7.5)
    assert np.array_equal(decode_points(encode_points(same)), same)  # a zero-width box: no division by zero
    flat = np.column_stack([np.linspace(-2, 2, 30), np.full(30, 0.3)])
    y = decode_points(encode_points(flat))
    assert (y[:, 1] == 0.3).all() and (np.abs(y - flat) <= _bound(flat)).all()


def test_float32_input_and_lists_are_taken():
    x = np.random.default_rng(3).standard_normal((20, 2)).astype(np.float32)
    y = decode_points(encode_points(x))
    assert (np.abs(y - x.astype(np.float64)) <= _bound(x.astype(np.float64))).all()
    assert decode_points(encode_points([[0.0, 1.0], [2.0, 3.0]])).tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_order_is_kept():
    x = np.random.default_rng(4).standard_normal((300, 2))
    y = decode_points(encode_points(x))
    assert (np.argsort(x[:, 0]) == np.argsort(y[:, 0])).mean() > 0.99


def test_the_most_points_fit_and_one_more_is_refused():
    rng = np.random.default_rng(5)
    worst = rng.integers(0, 65536, (MAX_LINK_POINTS, 2)).astype(np.float64)  # uniform uint16s: incompressible
    worst[0], worst[1] = (0.0, 0.0), (65535.0, 65535.0)
    s = encode_points(worst)
    assert len(s) <= MAX_LINK_CHARS and fits_in_link(worst)
    assert np.array_equal(decode_points(s), worst)  # integers on the grid come back exactly
    assert len(encode_points(rng.random((1000, 2)))) < MAX_LINK_CHARS / 1.9
    with pytest.raises(LinkDataError, match="2,001 are too many"):
        encode_points(rng.random((MAX_LINK_POINTS + 1, 2)))
    assert not fits_in_link(rng.random((MAX_LINK_POINTS + 1, 2)))


@pytest.mark.parametrize("bad", [np.zeros((0, 2)), np.zeros((5, 3)), np.zeros(4), [[1.0, float("nan")]],
                                 [[1.0, 2.0], [float("inf"), 0.0]], [[1.0, 2.0], [3.0]], "12", None])
def test_bad_points_are_refused(bad):
    with pytest.raises(LinkDataError) as err:
        encode_points(bad)
    assert "\n" not in str(err.value)
    assert not fits_in_link(bad)


def test_strings_are_url_safe():
    rng = np.random.default_rng(6)
    for _ in range(30):
        x = rng.standard_normal((int(rng.integers(1, 200)), 2)) * 10 ** rng.uniform(-5, 5)
        for s in (encode_points(x), encode_strokes([np.clip(x, -4, 4)])):
            assert quote(s, safe="") == s and "=" not in s
            assert parse_qs(urlencode({"data": s}))["data"] == [s]


def _small() -> str:
    return encode_points(np.random.default_rng(7).standard_normal((12, 2)))


def _refused(s, decode=decode_points):
    with pytest.raises(LinkDataError) as err:  # LinkDataError alone: anything else fails the test
        decode(s)
    assert str(err.value) and "\n" not in str(err.value)


def test_every_truncation_is_refused():
    for decode, s in ((decode_points, _small()), (decode_strokes, encode_strokes([[[0.0, 1.0], [2.0, 3.0]]]))):
        for i in range(len(s)):
            _refused(s[:i], decode)


def test_a_changed_character_anywhere_is_refused():
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
    for decode, s in ((decode_points, _small()), (decode_strokes, encode_strokes([[[0.0, 1.0], [2.0, 3.0]]]))):
        for i in range(len(s)):
            for c in alphabet:
                if c != s[i]:
                    _refused(s[:i] + c + s[i + 1:], decode)


def test_wrong_tags_garbage_and_other_types_are_refused():
    s = _small()
    body = s.partition(".")[2]
    for bad in ("p2." + body, "P1." + body, "p1" + body, body, "s1." + body, "x9." + body, "p1.." + body,
                "", ".", "p1.", "p1.A", "p1.AAAA", "hello world", "p1.%%%", "p1." + body + "=", "p1." + body + "AA",
                "p1.\u00e9" + body, " " + s, s + "\n", "p1." + "A" * (MAX_LINK_CHARS + 1)):
        _refused(bad)
    for bad in (None, 12, b"p1.AAAA", ["p1.AAAA"]):
        _refused(bad)
    with pytest.raises(LinkDataError, match="version 'p2'"):
        decode_points("p2." + body)
    with pytest.raises(LinkDataError, match="holds strokes"):
        decode_points(encode_strokes([[[0.0, 0.0]]]))
    with pytest.raises(LinkDataError, match="holds points"):
        decode_strokes(s)


def test_forged_headers_with_good_checksums_are_refused():
    planes = zlib.compress(bytes(40), 9)  # 10 points' worth of zeros
    ok = _forge("p1", struct.pack("<I4d", 10, 0, 0, 1, 1), planes)
    assert decode_points(ok).shape == (10, 2)  # the forger works
    for head in (struct.pack("<I4d", 11, 0, 0, 1, 1), struct.pack("<I4d", 9, 0, 0, 1, 1),
                 struct.pack("<I4d", 0, 0, 0, 1, 1), struct.pack("<I4d", 2**32 - 1, 0, 0, 1, 1),
                 struct.pack("<I4d", 10, 0, float("nan"), 1, 1), struct.pack("<I4d", 10, 0, 0, float("inf"), 1),
                 struct.pack("<I4d", 10, 2, 0, 1, 1)):
        _refused(_forge("p1", head, planes))
    _refused(_forge("p1", struct.pack("<I4d", 10, 0, 0, 1, 1), b"not zlib at all"))
    _refused(_forge("p1", struct.pack("<I4d", 10, 0, 0, 1, 1), planes + b"tail"))
    _refused(_forge("p1", struct.pack("<I4d", 10, 0, 0, 1, 1), planes[:-3]))
    too_many = MAX_LINK_POINTS + 1  # a well-formed value over the limit, its data all there
    _refused(_forge("p1", struct.pack("<I4d", too_many, 0, 0, 1, 1), zlib.compress(bytes(4 * too_many), 9)))
    ok = _forge("s1", struct.pack("<4I", 2, 2, 8000, 32000), zlib.compress(bytes([0, 0, 1, 1]) + bytes(8), 9))
    assert [len(s) for s in decode_strokes(ok)] == [1, 1]  # the forger works
    for lengths in ([0, 2], [1, 3], [3, 1]):  # an empty stroke; lengths that do not add up to n = 2
        raw = bytes([lengths[0] >> 8, lengths[1] >> 8, lengths[0] & 255, lengths[1] & 255]) + bytes(8)
        _refused(_forge("s1", struct.pack("<4I", 2, 2, 8000, 32000), zlib.compress(raw, 9)), decode_strokes)
    lengths = zlib.compress(bytes([0, 0, 0, 1]) + bytes(8), 9)  # strokes of 0 and 1 points
    _refused(_forge("s1", struct.pack("<4I", 2, 1, 8000, 32000), lengths), decode_strokes)
    grid_out = zlib.compress(bytes([0, 1]) + bytes([255, 255, 255, 255]), 9)  # q = 65535 > 2 * 32000
    _refused(_forge("s1", struct.pack("<4I", 1, 1, 8000, 32000), grid_out), decode_strokes)
    _refused(_forge("s1", struct.pack("<4I", 1, 1, 0, 32000), zlib.compress(bytes([0, 1]) + bytes(4))),
             decode_strokes)


def test_a_zip_bomb_is_refused_without_inflating_it():
    bomb = zlib.compress(bytes(6 * 1024 * 1024), 9)  # 6 MB of zeros in about 6 kB
    s = _forge("p1", struct.pack("<I4d", 10, 0, 0, 1, 1), bomb)
    assert len(s) <= MAX_LINK_CHARS  # so it reaches the inflater
    tracemalloc.start()
    try:
        with pytest.raises(LinkDataError, match="inflates past"):
            decode_points(s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


# --- strokes ----------------------------------------------------------------------------------------

def _pad_value(rng: np.random.Generator, k: int = 4) -> str:
    """A drawing as the pad sends it: JSON strokes of points rounded to 0.001, some dragged past the edge."""
    strokes = []
    for _ in range(k):
        m = int(rng.integers(1, 60))
        start = rng.uniform(-4, 4, 2)
        s = start + np.cumsum(rng.normal(0, 0.2, (m, 2)), 0)
        strokes.append(np.round(s, 3).tolist())
    strokes.append([[1.5, 1.5]])  # a dot
    strokes.append([[3.9, 0.0], [4.6, 0.1]])  # dragged past the edge: parse_strokes clips it
    return json.dumps(strokes)


def test_pad_strokes_round_trip_exactly_and_make_the_same_points():
    rng = np.random.default_rng(8)
    for _ in range(20):
        value = _pad_value(rng)
        strokes = parse_strokes(value)
        back = decode_strokes(encode_strokes(strokes))
        assert [len(s) for s in back] == [len(s) for s in strokes]
        assert all(np.array_equal(a, b) for a, b in zip(strokes, back))
        for noise in (0.0, 0.08):
            a = points_from_strokes(strokes, 2000, np.random.default_rng(3), noise=noise)
            b = points_from_strokes(back, 2000, np.random.default_rng(3), noise=noise)
            assert np.array_equal(a, b)


def test_any_strokes_round_trip_within_half_a_grid_step():
    rng = np.random.default_rng(9)
    strokes = [rng.uniform(-4, 4, (int(m), 2)) for m in rng.integers(1, 80, 6)]
    strokes[0][0] = (-4.0, 4.0)
    back = decode_strokes(encode_strokes(strokes))
    assert all(a.shape == b.shape and np.abs(a - b).max() <= 1 / 8000 / 2 + 1e-12 for a, b in zip(strokes, back))
    assert tuple(back[0][0]) == (-4.0, 4.0)
    a = points_from_strokes(strokes, 3000, np.random.default_rng(4), noise=0.05)
    b = points_from_strokes(back, 3000, np.random.default_rng(4), noise=0.05)
    assert np.abs(a - b).max() < 1e-3


def test_the_pads_json_value_is_read_as_the_run_reads_it():
    value = _pad_value(np.random.default_rng(10), k=2)
    back = decode_strokes(encode_strokes(value))
    assert [s.tolist() for s in back] == [s.tolist() for s in parse_strokes(value)]  # clipped onto the pad
    assert back[-1].tolist() == [[3.9, 0.0], [4.0, 0.1]]
    with pytest.raises(LinkDataError, match="draw something"):
        encode_strokes("")
    with pytest.raises(LinkDataError, match="far outside"):
        encode_strokes("[[[0, 0], [30, 0]]]")


def test_stroke_limits_and_bad_strokes():
    many = [np.zeros((1, 2))] * MAX_LINK_POINTS  # 5,000 dots: the most strokes a link takes
    assert len(decode_strokes(encode_strokes(many))) == MAX_LINK_POINTS
    long = np.random.default_rng(11).uniform(-4, 4, (MAX_LINK_POINTS, 2))
    assert len(encode_strokes([long])) <= MAX_LINK_CHARS
    with pytest.raises(LinkDataError, match="2,001 points"):
        encode_strokes([long, np.zeros((1, 2))])
    for bad in ([], [[]], [[[0.0, 0.0]], []], [[[0.0, float("nan")]]], [[[4.1, 0.0]]], [[[0.0, -1e9]]],
                [[[0.0, 1.0, 2.0]]], [["a", "b"]], "not json", "[]", 5, None):
        with pytest.raises(LinkDataError):
            encode_strokes(bad)
    with pytest.raises(LinkDataError):
        encode_strokes([[[0.0, 0.0]]], box=1e6)


def test_describe_left_out():
    line = describe_left_out(12000)
    assert line == ("the 12,000 points are too many for a link (at most 2,000): it opens with the built-in "
                    "dataset")
    assert "1 point " in describe_left_out(1) and "\n" not in describe_left_out(300)
    assert "too many" not in describe_left_out(MAX_LINK_POINTS)
