"""The feature table's result: :class:`FeatureTable` (features, dictionary, parameters), as a file.

Part of :mod:`tu_analytics.features.table` (import from there).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from tu_analytics.features.dictionary import DICTIONARY_SCHEMA, SEMANTICS_VERSION

_META_DICTIONARY = "tu_analytics.feature_dictionary"
_META_PARAMS = "tu_analytics.feature_params"
#: Parquet metadata key of :data:`~tu_analytics.features.dictionary.SEMANTICS_VERSION`.
META_SEMANTICS = "tu_analytics.semantics_version"


@dataclass(frozen=True)
class FeatureTable:
    """Features (``frame``, eager or lazy) and their ``dictionary`` (name, unit, definition,
    source_fields), plus the parameters they were built with."""

    frame: pl.DataFrame | pl.LazyFrame
    dictionary: pl.DataFrame
    every: str
    allowed_latency: str | None = None
    semantics_version: int = SEMANTICS_VERSION

    def metadata(self) -> dict[str, str]:
        """Parquet key-value metadata: dictionary, parameters and semantics version."""
        params = {
            "every": self.every,
            "allowed_latency": self.allowed_latency,
            "semantics_version": self.semantics_version,
        }
        return {
            _META_DICTIONARY: self.dictionary.write_json(),
            _META_PARAMS: json.dumps(params),
            META_SEMANTICS: str(self.semantics_version),
        }

    def collect(self) -> FeatureTable:
        """The same table with an eager ``frame``."""
        if isinstance(self.frame, pl.LazyFrame):
            return replace(self, frame=self.frame.collect())
        return self

    def write_parquet(self, path: str | Path) -> None:
        """Write the frame to ``path``; dictionary and parameters go in the file's key-value
        metadata, so the file explains itself and one file is all there is to copy."""
        frame = self.collect().frame
        assert isinstance(frame, pl.DataFrame)
        frame.write_parquet(path, metadata=self.metadata())

    @classmethod
    def read_parquet(cls, path: str | Path) -> FeatureTable:
        """Read a table written by :meth:`write_parquet`, dictionary included."""
        meta = pl.read_parquet_metadata(path)
        if _META_DICTIONARY not in meta:
            raise ValueError(f"{path} has no feature dictionary: not written by FeatureTable")
        dictionary = pl.read_json(meta[_META_DICTIONARY].encode(), schema=DICTIONARY_SCHEMA)
        params = json.loads(meta.get(_META_PARAMS, "{}"))
        return cls(
            frame=pl.read_parquet(path),
            dictionary=dictionary,
            every=str(params.get("every", "")),
            allowed_latency=params.get("allowed_latency"),
            semantics_version=int(params.get("semantics_version", 1)),
        )
