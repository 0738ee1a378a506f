"""Only tu_analytics.spark may import pyspark (the optional ``spark`` extra): the package and
every other module load with pyspark made unimportable."""

from __future__ import annotations

import subprocess
import sys

_PROBE = r"""
import importlib, pkgutil, sys

class _NoSpark:
    def find_spec(self, name, path=None, target=None):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError(f"{name} imported outside tu_analytics.spark")
        return None

sys.meta_path.insert(0, _NoSpark())
import tu_analytics
names = [m.name for m in pkgutil.walk_packages(tu_analytics.__path__, "tu_analytics.")
         if not m.name.startswith("tu_analytics.spark.")]
for name in names:
    importlib.import_module(name)
assert "tu_analytics.spark" in names
assert not [m for m in sys.modules if m.split(".")[0] == "pyspark"]
print(len(names))
"""


def test_only_the_spark_package_imports_pyspark() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=False, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 20  # every module was really imported
