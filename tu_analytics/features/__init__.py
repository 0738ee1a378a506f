"""Point-in-time feature sets per machine and time bucket, their dictionary, and labels.

``feature_table(main, every="1h", fault_codes=..., allowed_latency=...)`` returns a
:class:`FeatureTable` (``.frame``, ``.dictionary``, ``.write_parquet``/``.read_parquet``);
``future_target`` and ``fault_within`` join labels without leakage. This package reads frames
only: it never imports Kafka, settings or the sandbox.
"""

from tu_analytics.features.dictionary import feature_dictionary
from tu_analytics.features.labels import fault_within, future_target
from tu_analytics.features.table import FeatureTable, feature_table

__all__ = [
    "FeatureTable",
    "fault_within",
    "feature_dictionary",
    "feature_table",
    "future_target",
]
