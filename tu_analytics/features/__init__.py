"""Point-in-time feature sets per machine and time bucket, their dictionary, and labels.

``feature_table(main, every="1h", fault_codes=..., allowed_latency=...)`` returns a
:class:`FeatureTable` (``.frame``, ``.dictionary``, ``.write_parquet``/``.read_parquet``);
``feature_table(main, cutoffs=...)`` gives one row per (machine, cutoff time) instead.
``future_target`` and ``fault_within`` make labels; ``training_set`` joins them point in time
and splits by time with purge and embargo. This package reads frames only: it never imports
Kafka, settings or the sandbox.
"""

from tu_analytics.features.dictionary import SEMANTICS_VERSION, feature_dictionary
from tu_analytics.features.labels import fault_within, future_target
from tu_analytics.features.table import FeatureTable, feature_table
from tu_analytics.features.training import TimeSplit, TrainingSet, labels_from, training_set

__all__ = [
    "SEMANTICS_VERSION",
    "FeatureTable",
    "TimeSplit",
    "TrainingSet",
    "fault_within",
    "feature_dictionary",
    "feature_table",
    "future_target",
    "labels_from",
    "training_set",
]
