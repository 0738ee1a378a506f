from __future__ import annotations

import subprocess
import sys

import tu_analytics
from tu_analytics.errors import TuAnalyticsError, TuAnalyticsWarning


def test_all_is_complete_and_resolvable() -> None:
    public = {n for n in dir(tu_analytics) if not n.startswith("_")} | set(tu_analytics._LAZY)
    public -= {"errors", "annotations", "TYPE_CHECKING", "Any"}
    public = {n for n in public if not isinstance(getattr(tu_analytics, n), type(tu_analytics))}
    assert set(tu_analytics.__all__) - {"__version__"} == public
    for name in tu_analytics.__all__:
        assert getattr(tu_analytics, name) is not None


def test_one_exception_tree() -> None:
    for name in tu_analytics.__all__:
        obj = getattr(tu_analytics, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, TuAnalyticsError), name
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, TuAnalyticsWarning), name


def test_import_does_no_io_and_loads_no_kafka_client() -> None:
    code = (
        "import sys, socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('I/O at import')\n"
        "socket.socket.connect = refuse\n"
        "import tu_analytics, tu_analytics.widgets, tu_analytics.features\n"
        "c = tu_analytics.connect(bootstrap_servers='x:1', topic='t', schema_registry_url='http://r',"
        " sasl_username='u', sasl_password='p')\n"
        "assert 'confluent_kafka' not in sys.modules, 'Kafka client loaded before any read'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
