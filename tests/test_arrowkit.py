"""aifactory.arrowkit.cast gives what pyarrow's public cast gives, and fails as it does."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aifactory.arrowkit import cast


@pytest.mark.parametrize(
    ("values", "target"),
    [
        (pa.array(["a", None, "ccc"], pa.large_string()), pa.string()),
        (pa.chunked_array([["x"], ["y", None]], pa.large_string()), pa.string()),
        (pa.array([1, 2, None], pa.int64()), pa.int32()),
        (pa.array([1.0, None], pa.float64()), pa.float64()),
        (pa.array(["b", "a", "b"]).dictionary_encode(), pa.string()),
        (pa.chunked_array([], pa.large_string()), pa.string()),
    ],
)
def test_cast_matches_the_public_cast(
    values: pa.Array | pa.ChunkedArray, target: pa.DataType
) -> None:
    got = cast(values, target)
    want = pc.cast(values, target)
    assert type(got) is type(want)
    assert got.type == target
    assert got.equals(want)


def test_a_column_of_the_type_is_returned_as_is() -> None:
    values = pa.array([1, 2], pa.int32())
    assert cast(values, pa.int32()) is values


def test_unsafe_casts_raise_as_the_public_cast_does() -> None:
    values = pa.array([2**40], pa.int64())
    with pytest.raises(pa.ArrowInvalid):
        pc.cast(values, pa.int32())
    with pytest.raises(pa.ArrowInvalid):
        cast(values, pa.int32())
    with pytest.raises(pa.ArrowInvalid):
        cast(pa.array([1.5]), pa.int64())
    with pytest.raises(pa.ArrowNotImplementedError):
        cast(pa.array([[1]]), pa.float64())


def test_the_system_pool_is_used_unless_the_user_chose_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from aifactory import arrowkit  # noqa: PLC0415

    chosen: list[pa.MemoryPool] = []
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    monkeypatch.setenv(arrowkit.POOL_ENV, "mimalloc")
    arrowkit.use_system_pool()
    assert chosen == []  # the user's choice stands
    monkeypatch.delenv(arrowkit.POOL_ENV)
    arrowkit.use_system_pool()
    assert [p.backend_name for p in chosen] == ["system"]
