"""Drawn or uploaded 2D data as one URL query value, so that a share link can carry it.

A built-in dataset travels in a link as its name and settings (:meth:`playground.runspec.RunSpec.to_query`);
a drawing or an uploaded file has no name, so this module packs the points themselves into a short string of
URL-safe characters and back, refusing anything malformed with a one-line :class:`LinkDataError`.

Two kinds of value, each a version tag then unpadded URL-safe base64 (characters ``A-Z a-z 0-9 - _`` after
the tag; the tag adds ``.``, so :func:`urllib.parse.quote` leaves the whole string as it is)::

    p1.<base64url(header | zlib(planes) | crc32)>    points, (n, 2) floats          encode_points / decode_points
    s1.<base64url(header | zlib(planes) | crc32)>    a drawing's strokes            encode_strokes / decode_strokes

Points (``p1``): the header is ``<I4d``, little-endian: n, then the points' own bounding box as float64
(x1 min, x2 min, x1 max, x2 max). Each coordinate is quantised to a uint16 over its column's range,
q = round((x - min) / (max - min) * 65535) (q = 0 for a column whose points are all equal), so a decoded
coordinate is off by at most half a step, ``(max - min) / 65535 / 2`` per coordinate, plus float64 rounding
(a few units in the last place of the largest coordinate, which only shows when the spread is under about
1e-11 of the coordinates' size). The box's corners come back exactly.

Strokes (``s1``): the header is ``<4I``: k strokes, n points in all, S grid steps per unit and the grid's
offset Q; the zlib data holds the k stroke lengths (uint16) before the coordinates. A coordinate is stored as
the uint16 ``round(x * S) + Q`` on a fixed grid over the pad box [-PAD_BOX, PAD_BOX] and decoded as
``(q - Q) / S``. S is a multiple of 1000 (8000 for the 4-unit pad), so the pad's own values, which it rounds
to 0.001 (playground/drawpad.py), come back bit for bit and :func:`~playground.datasets.points_from_strokes`
makes the same points from the decoded strokes with the same seed; any other value is off by at most
``1 / S / 2`` (6.25e-5 on the pad).

In both, the uint16 values are stored column by column, high bytes then low bytes (zlib finds the repeats in
the high bytes of clustered data), compressed with zlib level 9. The CRC32 covers the tag, the header and the
compressed bytes: a truncated or mistyped link is refused, not decoded into other data. It is a check against
damage, not a signature: a crafted value with a good CRC still passes through the same bounds (at most
MAX_LINK_POINTS points, finite, the declared size exactly, decompression capped at that size).

Sizes: 2,000 points of uniform noise, which zlib cannot shrink, take about 10,700 characters, so MAX_LINK_CHARS
is 11,000 and any 1 to MAX_LINK_POINTS finite points fit; 1,000 take 5,405. The limit is the server's: uvicorn's
h11 parser refuses (400) a request head over 16 KiB that arrives in more than one piece, as a long URL does over
a network (measured: 15,000 characters passed, 17,000 failed), and a link carries the run's settings as well.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import zlib

import numpy as np

from .datasets import PAD_BOX, DataError, parse_strokes

MAX_LINK_POINTS = 2000
MAX_LINK_CHARS = 11_000  # the longest value decode_* reads; 2,000 incompressible points take about 10,700
Q_MAX = 65535  # uint16 quantisation levels - 1

POINTS_TAG = "p1"
STROKES_TAG = "s1"
_TAGS = (POINTS_TAG, STROKES_TAG)

_POINTS_HEAD = struct.Struct("<I4d")  # n, x1 min, x2 min, x1 max, x2 max
_STROKES_HEAD = struct.Struct("<4I")  # k strokes, n points, grid steps per unit, grid offset
_CRC = struct.Struct("<I")
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_TAG = re.compile(r"[a-z][0-9]{1,3}")


class LinkDataError(ValueError):
    """Link data that cannot be made or read; the message says why in one line."""


# --- points -----------------------------------------------------------------------------------------

def encode_points(x: np.ndarray) -> str:
    """(n, 2) finite points, 1 <= n <= MAX_LINK_POINTS, as a URL-safe string (see the module's docstring for
    the format and the quantisation bound); LinkDataError otherwise."""
    x = _as_points(x, "the points")
    lo, hi = x.min(0), x.max(0)
    half = hi * 0.5 - lo * 0.5  # half the width: hi - lo itself can overflow for coordinates near 1e308
    safe = np.where(half > 0, half, 1.0)
    t = np.where(half > 0, (x * 0.5 - lo * 0.5) / safe, 0.0)
    q = np.clip(np.rint(t * Q_MAX), 0, Q_MAX).astype(np.uint16)
    head = _POINTS_HEAD.pack(len(x), float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    return _wrap(POINTS_TAG, head, _planes(q[:, 0], q[:, 1]))


def decode_points(s: str) -> np.ndarray:
    """The float64 (n, 2) points of an :func:`encode_points` string; LinkDataError for anything else."""
    head, z = _unwrap(s, POINTS_TAG, _POINTS_HEAD.size)
    n, x1lo, x2lo, x1hi, x2hi = _POINTS_HEAD.unpack(head)
    lo, hi = np.array([x1lo, x2lo]), np.array([x1hi, x2hi])
    if not 1 <= n <= MAX_LINK_POINTS:
        raise LinkDataError(f"link data: {n:,} points declared, outside [1, {MAX_LINK_POINTS:,}]")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise LinkDataError("link data: the points' box is not finite")
    if not (lo <= hi).all():
        raise LinkDataError("link data: the points' box is inverted")
    q = _unplanes(_inflate(z, 4 * n), 2, n).T
    half = hi * 0.5 - lo * 0.5
    x = np.clip(2.0 * (lo * 0.5 + q.astype(np.float64) / Q_MAX * half), lo, hi)
    return np.where(q == 0, lo, np.where(q == Q_MAX, hi, x))  # the box's corners exactly


def fits_in_link(x) -> bool:
    """Whether :func:`encode_points` takes these points and its string is at most MAX_LINK_CHARS long."""
    try:
        encode_points(x)
    except LinkDataError:
        return False
    return True


def describe_left_out(n: int, what: str = "points") -> str:
    """One line for a link that leaves out n points of your own data (drawn or uploaded)."""
    n = int(n)
    noun = what if n != 1 else what.removesuffix("s")
    if n > MAX_LINK_POINTS:
        return (f"the {n:,} {noun} are too many for a link (at most {MAX_LINK_POINTS:,}): "
                "it opens with the built-in dataset")
    return f"the {n:,} {noun} could not be put in a link: it opens with the built-in dataset"


# --- strokes ----------------------------------------------------------------------------------------

def encode_strokes(strokes, box: float = PAD_BOX) -> str:
    """A drawing's strokes (a list of (m_i, 2) arrays in [-box, box]^2, as parse_strokes returns them, or the
    pad's JSON value, which goes through parse_strokes first) as a URL-safe string; LinkDataError when they are
    empty, not finite, outside the box or over MAX_LINK_POINTS points in all."""
    steps, offset = _grid(box)
    if isinstance(strokes, (str, bytes)):  # the pad's value: read (and clipped) as the run reads it
        try:
            strokes = parse_strokes(strokes, box)
        except DataError as err:
            raise LinkDataError(str(err)) from None
    try:
        arrays = [np.asarray(s, np.float64).reshape(-1, 2) for s in strokes]
    except (ValueError, TypeError):
        raise LinkDataError("the strokes are not lists of (x1, x2) points") from None
    if not arrays:
        raise LinkDataError("the drawing has no strokes")
    if any(len(a) == 0 for a in arrays):
        raise LinkDataError("the drawing has an empty stroke")
    n = sum(len(a) for a in arrays)
    if n > MAX_LINK_POINTS:
        raise LinkDataError(f"the drawing has {n:,} points, too many for a link (at most {MAX_LINK_POINTS:,})")
    pts = np.concatenate(arrays)
    if not np.isfinite(pts).all():
        raise LinkDataError("a drawn point is not finite")
    q = np.rint(pts * steps) + offset
    if not ((q >= 0) & (q <= 2 * offset)).all():
        a, b = pts[((q < 0) | (q > 2 * offset)).any(1)][0]
        raise LinkDataError(f"a drawn point ({a:.3g}, {b:.3g}) lies outside the pad [-{box:g}, {box:g}]²")
    q = q.astype(np.uint16)
    lengths = np.array([len(a) for a in arrays], np.uint16)
    head = _STROKES_HEAD.pack(len(arrays), n, steps, offset)
    return _wrap(STROKES_TAG, head, _planes(lengths) + _planes(q[:, 0], q[:, 1]))


def decode_strokes(s: str) -> list[np.ndarray]:
    """The strokes (float64 (m_i, 2) arrays) of an :func:`encode_strokes` string; LinkDataError otherwise."""
    head, z = _unwrap(s, STROKES_TAG, _STROKES_HEAD.size)
    k, n, steps, offset = _STROKES_HEAD.unpack(head)
    if not 1 <= n <= MAX_LINK_POINTS:
        raise LinkDataError(f"link data: {n:,} drawn points declared, outside [1, {MAX_LINK_POINTS:,}]")
    if not 1 <= k <= n:
        raise LinkDataError(f"link data: {k:,} strokes declared for {n:,} points")
    if steps < 1 or not 1 <= offset <= Q_MAX // 2:
        raise LinkDataError("link data: the drawing's grid is invalid")
    raw = _inflate(z, 2 * k + 4 * n)
    lengths = _unplanes(raw[:2 * k], 1, k)[0].astype(np.int64)
    q = _unplanes(raw[2 * k:], 2, n).T
    if (lengths < 1).any() or int(lengths.sum()) != n:
        raise LinkDataError("link data: the stroke lengths do not add up to the points")
    if (q > 2 * offset).any():
        raise LinkDataError("link data: a drawn point lies outside its grid")
    pts = (q.astype(np.float64) - offset) / steps
    return np.split(pts, np.cumsum(lengths)[:-1])


def _grid(box: float) -> tuple[int, int]:
    """Grid steps per unit (a multiple of 1000, so the pad's 0.001 values sit on it) and the offset of 0."""
    box = float(box)
    if not (math.isfinite(box) and box > 0):
        raise LinkDataError(f"the pad box {box:g} must be a positive number")
    steps = 1000 * int(Q_MAX // (2000 * box)) if box <= Q_MAX / 2000 else 0
    if steps < 1000:
        raise LinkDataError(f"the pad box ±{box:g} is too large for a link's 0.001 grid")
    return steps, math.ceil(box * steps)


# --- shared -----------------------------------------------------------------------------------------

def _as_points(x, what: str) -> np.ndarray:
    try:
        x = np.asarray(x, np.float64)
    except (ValueError, TypeError):
        raise LinkDataError(f"{what} are not numbers") from None
    if x.ndim != 2 or x.shape[1] != 2:
        raise LinkDataError(f"{what} have shape {x.shape}, not (n, 2)")
    if len(x) < 1:
        raise LinkDataError(f"{what}: there are none")
    if len(x) > MAX_LINK_POINTS:
        raise LinkDataError(f"{what}: {len(x):,} are too many for a link (at most {MAX_LINK_POINTS:,})")
    if not np.isfinite(x).all():
        i = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise LinkDataError(f"{what}: point {i + 1} is not finite")
    return x


def _planes(*cols: np.ndarray) -> bytes:
    """uint16 columns as bytes: each column's high bytes, then its low bytes."""
    out = []
    for c in cols:
        c = np.asarray(c, np.uint16)
        out += [(c >> 8).astype(np.uint8).tobytes(), (c & 0xFF).astype(np.uint8).tobytes()]
    return b"".join(out)


def _unplanes(raw: bytes, ncols: int, n: int) -> np.ndarray:
    """The inverse of _planes: (ncols, n) uint16."""
    b = np.frombuffer(raw, np.uint8).reshape(ncols, 2, n).astype(np.uint16)
    return (b[:, 0] << 8) | b[:, 1]


def _wrap(tag: str, head: bytes, raw: bytes) -> str:
    body = head + zlib.compress(raw, 9)
    crc = zlib.crc32(tag.encode() + body)
    s = f"{tag}.{_b64(body + _CRC.pack(crc))}"
    if len(s) > MAX_LINK_CHARS:
        raise LinkDataError(f"the data takes {len(s):,} characters, over a link's {MAX_LINK_CHARS:,}")
    return s


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def _unwrap(s, tag: str, head_size: int) -> tuple[bytes, bytes]:
    """A value's header and compressed bytes, once its length, characters, tag and CRC are checked."""
    if not isinstance(s, str):
        raise LinkDataError(f"link data must be text, not {type(s).__name__}")
    if not s:
        raise LinkDataError("link data is empty")
    if len(s) > MAX_LINK_CHARS:
        raise LinkDataError(f"link data is {len(s):,} characters long, over the {MAX_LINK_CHARS:,} limit")
    got, dot, payload = s.partition(".")
    if not dot or not _TAG.fullmatch(got):
        raise LinkDataError("link data has no version tag (such as 'p1.'): it is not link data")
    if got != tag:
        kind = {POINTS_TAG: "points", STROKES_TAG: "strokes"}
        if got in kind:
            raise LinkDataError(f"link data holds {kind[got]} ('{got}'), not {kind[tag]} ('{tag}')")
        raise LinkDataError(f"link data has version '{got}', which this version cannot read (known: "
                            f"{', '.join(_TAGS)})")
    if not _B64.fullmatch(payload) or len(payload) % 4 == 1:
        raise LinkDataError("link data is damaged (a character outside its alphabet, or cut short)")
    try:
        blob = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise LinkDataError("link data is damaged (not base64)") from None
    if _b64(blob) != payload:  # unused low bits set in the last character: not what encode writes
        raise LinkDataError("link data is damaged (its last character)")
    if len(blob) < head_size + _CRC.size:
        raise LinkDataError("link data is cut short")
    body, (crc,) = blob[:-_CRC.size], _CRC.unpack(blob[-_CRC.size:])
    if zlib.crc32(tag.encode() + body) != crc:
        raise LinkDataError("link data is damaged or cut short (its checksum does not match)")
    return body[:head_size], body[head_size:]


def _inflate(z: bytes, size: int) -> bytes:
    """Exactly `size` bytes from the zlib stream z, never more than size + 1 held in memory."""
    d = zlib.decompressobj()
    try:
        raw = d.decompress(z, size + 1)
    except zlib.error:
        raise LinkDataError("link data is damaged (its compressed part does not inflate)") from None
    if len(raw) > size or d.unconsumed_tail:
        raise LinkDataError(f"link data inflates past the {size:,} bytes its header declares")
    if len(raw) < size or not d.eof:
        raise LinkDataError("link data is cut short (fewer points than its header declares)")
    if d.unused_data:
        raise LinkDataError("link data has bytes after its compressed part")
    return raw
