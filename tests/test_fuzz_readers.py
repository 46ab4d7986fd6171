"""The readers against hostile files: random bytes, truncated and corrupted files of every format,
deep nesting and huge numbers. ``read_sweeps`` never raises (each problem is a ``Rejected``) and
keeps the good file beside the bad one, ``lrfind analyze`` exits 0 or 1 without a traceback, and
``RangeTestResult.load`` raises nothing but ``ValueError``."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrfind
from lrfind.cli import main
from lrfind.io import EXTENSIONS, read_sweeps

LRS = lrfind.sweep_lrs(1e-5, 10.0, 12)
LOSSES = np.r_[np.linspace(2.0, 0.5, 10), 40.0, np.nan]
GOOD = {"lr": LRS.tolist(), "loss": [1.0] * len(LRS)}


def _npz(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, lrs=np.tile(LRS, 2), losses=np.tile(LOSSES, 2), offsets=[0, 12, 24], names=np.array(["a", "b"]))
    return buffer.getvalue()


def _parquet(lists: bool) -> bytes:
    if lists:
        table = pa.table({"name": ["a", "b"], "lr": [LRS.tolist()] * 2, "loss": [LOSSES.tolist()] * 2})
    else:
        table = pa.table({"run": np.repeat(["a", "b"], 12), "lr": np.tile(LRS, 2), "loss": np.tile(LOSSES, 2)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


RESULT = lrfind.RangeTestResult.from_sweep(LRS, LOSSES, methods=["valley", "steepest"]).to_dict()
#: A valid file of each format (two of some), to truncate and corrupt.
VALID: list[tuple[str, bytes]] = [
    (
        ".csv",
        (
            "run,lr,loss\n"
            + "".join(
                f"r{i % 2},{a!r},{b!r}\n"
                for i, (a, b) in enumerate(zip(np.repeat(LRS, 2).tolist(), np.repeat(LOSSES, 2).tolist(), strict=True))
            )
        ).encode(),
    ),  # fmt: skip
    (
        ".csv",
        ("lr,loss\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(LRS.tolist(), LOSSES.tolist(), strict=True))).encode(),
    ),  # fmt: skip
    (".json", json.dumps(RESULT).encode()),
    (
        ".json",
        json.dumps({"format": "lrfind.ParallelResult", "version": 1, "seeds": [1, 2], "runs": [RESULT] * 2}).encode(),
    ),  # fmt: skip
    (".jsonl", (json.dumps({**GOOD, "name": "x"}) + "\n" + json.dumps(GOOD) + "\n").encode()),
    (".npz", _npz(compressed=False)),
    (".npz", _npz(compressed=True)),
    (".parquet", _parquet(lists=False)),
    (".parquet", _parquet(lists=True)),
]


@st.composite
def truncated(draw: st.DrawFn) -> tuple[str, bytes]:
    ext, data = draw(st.sampled_from(VALID))
    return ext, data[: draw(st.integers(0, len(data) - 1))]


#: The fields a reader trusts, by the signature that starts their structure: a zip local header
#: (flags, compression method, CRC, sizes, name and extra lengths), central directory entry (the
#: same, the comment length, disk and offset), end record, and a .npy header (version, length).
_FIELDS = {
    b"PK\x03\x04": (6, 8, 14, 18, 22, 26, 28),
    b"PK\x01\x02": (8, 10, 16, 20, 24, 28, 30, 32, 34, 42),
    b"PK\x05\x06": (4, 6, 8, 10, 12, 16, 20),
    b"\x93NUMPY": (6, 8, 9),
}


def _fields(data: bytes) -> list[int]:
    """Where those fields are in ``data``, and the start of a Parquet file's footer (its metadata,
    which says where every column is): random offsets rarely hit them."""
    offsets = [
        m.start() + f for sig, fields in _FIELDS.items() for m in re.finditer(re.escape(sig), data) for f in fields
    ]
    if data.endswith(b"PAR1"):
        footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
        offsets.extend(range(footer, len(data) - 4, 7))
    return [o for o in offsets if o < len(data)]


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file with a few bytes overwritten, anywhere or in the fields above. The places and
    values come from a seeded ``random.Random``: hypothesis's own integers favour small values,
    and so the first bytes of a file, which hold no more than its signature."""
    ext, data = draw(st.sampled_from(VALID))
    rng = draw(st.randoms(use_true_random=True))
    buffer = bytearray(data)
    fields = _fields(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.choice(fields) + rng.randint(0, 3) if fields and rng.random() < 0.5 else rng.randrange(len(data))
        buffer[min(at, len(data) - 1)] = rng.choice([0x00, 0x01, 0x08, 0x20, 0x41, 0xFF, rng.randrange(256)])
    return ext, bytes(buffer)


def _nested(depth: int, inner: str, opening: str) -> str:
    closing = "]" if opening == "[" else "}"
    return opening * depth + inner + closing * depth


HUGE = st.integers(300, 4000).map(lambda digits: "9" * digits)  # 4,300 digits is Python's own limit


@st.composite
def hostile_json(draw: st.DrawFn) -> tuple[str, bytes]:
    """Deep nesting (past json's recursion limit and below it) and integers beyond a float, in
    JSON, JSON Lines, and a saved result's keys."""
    ext = draw(st.sampled_from([".json", ".jsonl"]))
    kind = draw(st.sampled_from(["list", "object", "in lr", "in format", "huge lr", "huge key", "huge name"]))
    depth = draw(st.integers(90, 3000))
    if kind == "list":
        text = _nested(depth, json.dumps(GOOD), "[")
    elif kind == "object":
        text = '{"a": ' * depth + json.dumps(GOOD) + "}" * depth
    elif kind == "in lr":
        text = '{"lr": [1e-3, ' + _nested(depth, "1", "[") + '], "loss": [1, 2]}'
    elif kind == "in format":  # a value shown in the reason
        text = '{"format": ' + _nested(depth, "1", "[") + ', "version": 1}'
    elif kind == "huge lr":
        text = '{"lr": [1e-3, ' + draw(HUGE) + '], "loss": [1, 2]}'
    elif kind == "huge name":
        text = json.dumps({**GOOD, "name": 0}).replace('"name": 0', '"name": ' + draw(HUGE))
    else:  # a saved result with a huge number where a number belongs
        key = draw(st.sampled_from(["lrs", "losses", "grad_norms", "version", "skipped_steps", "threshold"]))
        doc = dict(RESULT, grad_norms=[0.0] * 11, options=dict(RESULT["options"], threshold=4))
        text = json.dumps(doc)
        if key in ("lrs", "losses", "grad_norms"):
            text = text.replace(f'"{key}": [', f'"{key}": [{draw(HUGE)}, ', 1)
        else:
            value = doc.get(key, doc["options"].get(key))
            text = text.replace(f'"{key}": {value}', f'"{key}": {draw(HUGE)}', 1)
    return ext, text.encode()


CONTENTS = st.one_of(
    st.tuples(st.sampled_from(EXTENSIONS), st.binary(max_size=300)),
    st.tuples(st.sampled_from([".csv", ".json", ".jsonl"]), st.text(max_size=200).map(str.encode)),
    truncated(),
    corrupted(),
    corrupted(),  # twice as often: the binary formats fail in the most ways
    hostile_json(),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good.json, and the hostile file written next to it by each example."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "good.json").write_text(json.dumps(GOOD))
    return root


def _main(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["analyze", *args])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue()


@settings(max_examples=300, deadline=None)
@given(content=CONTENTS)
def test_hostile_files_are_rejected_never_raised(folder: Path, content: tuple[str, bytes]) -> None:
    ext, data = content
    for old in folder.glob("hostile.*"):
        old.unlink()
    bad = folder / f"hostile{ext}"
    bad.write_bytes(data)
    good = folder / "good.json"

    s = read_sweeps([good, bad])
    assert s.names[0] == "good" and s.files_read == 2
    assert len(s) > 1 or s.rejected, "the hostile file gave neither a sweep nor a rejection"
    for r in s.rejected:
        assert r.source.startswith(str(bad)) and r.reason, r

    code, out = _main(str(good), str(bad), "--format", "json")
    assert code == (1 if s.rejected else 0)
    assert json.loads(out)["summary"]["rejected"] == len(s.rejected)
    code, _ = _main(str(bad), "--format", "csv")
    assert code in (0, 1)

    try:
        lrfind.RangeTestResult.load(bad)
    except ValueError as e:
        assert str(bad) in str(e)


@pytest.mark.parametrize("index", [i for i, (ext, _) in enumerate(VALID) if ext in (".npz", ".parquet")])
def test_every_structure_field_overwritten(tmp_path: Path, index: int) -> None:
    """Each field of ``_fields`` (and the byte after it) set to values that mean something to a
    zip reader (no compression, encryption, patched data, strong encryption, all bits): random
    corruption reaches these rarely, and each raised something of its own before."""
    ext, data = VALID[index]
    path = tmp_path / f"x{ext}"
    for at in sorted({a + d for a in _fields(data) for d in (0, 1) if a + d < len(data)}):
        for value in (0x00, 0x01, 0x20, 0x41, 0xFF):
            buffer = bytearray(data)
            buffer[at] = value
            path.write_bytes(buffer)
            s = read_sweeps([path])  # raises nothing
            assert len(s) or s.rejected, (at, value)
            assert all(r.source.startswith(str(path)) for r in s.rejected), (at, value)


def test_summary_of_losses_near_the_float_limit():
    """Finite losses near 1e308 whose lag-free curve overflows to inf in places: the summary
    says what it can, its marks read off the finite points (it raised IndexError)."""
    lrs = np.array([3.048206148278822e-256, 3.984268578967609e-256, 6.231732001672014e-256,
                    8.121382110551446e-256, 1.0221450439386719e-255])  # fmt: skip
    losses = np.array([9.940947188116752e307, 7.771427563761282e307, 5.601907939405814e307,
                       3.4323883150503453e307, 1.262868690694876e307])  # fmt: skip
    result = lrfind.RangeTestResult.from_sweep(lrs, losses)
    assert np.isinf(result.trend).any() and np.isfinite(result.losses).all()
    lines = result.summary().splitlines()
    finite = np.flatnonzero(np.isfinite(result.trend))
    lowest = finite[np.argmin(result.trend[finite])]
    assert lines[0].split() == ["LR", "loss", "(raw)"]
    assert [line for line in lines if "<- lowest" in line] == [
        f"{lrs[lowest]:9.2e}  {result.trend[lowest]:9.4g}  ({losses[lowest]:.4g})  <- lowest (best zone)"
    ]
    assert lines[-1] == result.diagnosis.message
