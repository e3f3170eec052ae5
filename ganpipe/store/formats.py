"""File formats of the run store: one small class per format, turning objects into bytes and back.

``RunStore`` only moves bytes (atomically); what those bytes mean is decided here, one format at
a time, in the manner of kedro's datasets. A format that finds a file not holding what it
should raises ``StoreDataError`` naming the file and what to do: files in a store may come from
anyone, so nothing read here is ever unpickled (docs/architecture.md, "The store").
Heavy libraries (pandas, pyarrow, numpy) are imported on first use: importing the store must
stay cheap.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from ganpipe.store.errors import StoreDataError, short

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


class Format:
    """How one kind of object is stored: ``encode`` to the bytes a write stores, ``decode``
    the bytes a read returns (``uri`` names the file in error messages)."""

    def encode(self, obj: Any) -> bytes | memoryview:
        return obj

    def decode(self, data: bytes, uri: str) -> Any:
        return data


class Text(Format):
    """UTF-8 text."""

    def encode(self, obj: str) -> bytes:
        return obj.encode("utf-8")

    def decode(self, data: bytes, uri: str) -> str:
        return data.decode("utf-8")


class Json(Text):
    """JSON, indented with sorted keys so that equal content gives equal bytes (and hashes);
    values JSON lacks are written as their ``str``."""

    def encode(self, obj: Any) -> bytes:
        return super().encode(json.dumps(obj, indent=2, sort_keys=True, default=str))

    def decode(self, data: bytes, uri: str) -> Any:
        return json.loads(super().decode(data, uri))


class Parquet(Format):
    """A pandas DataFrame as Parquet, without its index."""

    def encode(self, obj: pd.DataFrame) -> bytes:
        buf = io.BytesIO()
        obj.to_parquet(buf, index=False)
        return buf.getvalue()

    def decode(self, data: bytes, uri: str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))


class ArrowTable(Format):
    """A pyarrow table as Parquet (no pandas round trip: lean for large manifests)."""

    def encode(self, obj: pa.Table) -> memoryview:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(obj, sink)
        return memoryview(sink.getvalue())

    def decode(self, data: bytes, uri: str) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(data))


class Npy(Format):
    """A plain numpy array (``.npy``); one that would need unpickling is refused."""

    def encode(self, obj: np.ndarray) -> memoryview:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return buf.getbuffer()

    def decode(self, data: bytes, uri: str) -> np.ndarray:
        import numpy as np

        try:
            # allow_pickle=False: arrays in a store may come from anyone; never unpickle them.
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise StoreDataError(
                f"{uri} is not a plain array ({short(exc)})",
                where="run store",
                fix="pixel shards hold uint8 arrays only; ingest the dataset again",
            ) from exc


BYTES = Format()
TEXT = Text()
JSON = Json()
PARQUET = Parquet()
ARROW_TABLE = ArrowTable()
NPY = Npy()
