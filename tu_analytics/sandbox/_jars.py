"""Finding Java and Maven, and resolving the broker and registry from Maven Central.

The broker (Apache Kafka) runs on Java 17+. Apicurio Registry 3.3 is compiled for Java 21
(class file 65), so the registry needs a 21+ runtime: one is looked for beside the default
``java`` (``TU_SANDBOX_REGISTRY_JAVA``, ``JAVA_HOME``, ``/usr/lib/jvm/*``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from ..errors import SandboxError
from ._state import APICURIO_VERSION, KAFKA_VERSION

POM = Path(__file__).parent / "maven" / "pom.xml"


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _candidates() -> list[str]:
    found: list[str] = []
    home = os.environ.get("JAVA_HOME")
    if home:
        found.append(str(Path(home) / "bin" / "java"))
    which = shutil.which("java")
    if which:
        found.append(which)
    return [c for c in found if Path(c).exists()]


def _first_at_least(candidates: list[str], minimum: int) -> str | None:
    for java in candidates:
        major = _java_major(java)
        if major is not None and major >= minimum:
            return java
    return None


def find_java(minimum: int = 17) -> str:
    override = os.environ.get("TU_SANDBOX_JAVA")
    java = _first_at_least(([override] if override else []) + _candidates(), minimum)
    if java:
        return java
    raise SandboxError(
        f"Java {minimum}+ was not found (looked at TU_SANDBOX_JAVA, JAVA_HOME and PATH). "
        "Install a JRE, e.g. `apt-get install openjdk-17-jre-headless`, then run "
        "`tu-analytics sandbox up` again."
    )


def find_registry_java(minimum: int = 21) -> str:
    override = os.environ.get("TU_SANDBOX_REGISTRY_JAVA")
    candidates = ([override] if override else []) + _candidates()
    # Only look beside the default Java once PATH/JAVA_HOME are known to have one: a machine
    # with no Java on its path should get the "Java missing" message, not a half start.
    if candidates:
        candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java"))
    java = _first_at_least(candidates, minimum)
    if java:
        return java
    raise SandboxError(
        f"Apicurio Registry {APICURIO_VERSION} needs Java {minimum}+ and none was found "
        "(looked at TU_SANDBOX_REGISTRY_JAVA, JAVA_HOME, PATH and /usr/lib/jvm). Install one "
        "(e.g. a Temurin 21+ JDK) or point TU_SANDBOX_REGISTRY_JAVA at its bin/java."
    )


def find_mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise SandboxError(
            "Maven (mvn) was not found on PATH; it is needed once to resolve Kafka and the "
            "Schema Registry from Maven Central. Install it (e.g. `apt-get install maven`), "
            "then run `tu-analytics sandbox up` again."
        )
    return mvn


def kafka_libs(cache: Path) -> Path:
    return cache / f"kafka-{KAFKA_VERSION}" / "libs"


def apicurio_home(cache: Path) -> Path:
    return cache / f"apicurio-registry-{APICURIO_VERSION}"


def jars_cached(cache: Path) -> bool:
    return (kafka_libs(cache) / ".complete").exists() and (
        apicurio_home(cache) / ".complete"
    ).exists()


def ensure_jars(cache: Path, say: Callable[[str], None]) -> bool:
    """Resolve jars into ``cache`` unless already there. Returns True if it downloaded."""
    if jars_cached(cache):
        return False
    mvn = find_mvn()
    cache.mkdir(parents=True, exist_ok=True)
    libs = kafka_libs(cache)
    if not (libs / ".complete").exists():
        say(f"resolving Apache Kafka {KAFKA_VERSION} from Maven Central")
        work = cache / "maven"
        work.mkdir(exist_ok=True)
        shutil.copy(POM, work / "pom.xml")
        _mvn(
            mvn,
            [
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
        )
        (libs / ".complete").touch()
    home = apicurio_home(cache)
    if not (home / ".complete").exists():
        say(f"resolving Apicurio Registry {APICURIO_VERSION} from Maven Central")
        dl = cache / "downloads"
        _mvn(
            mvn,
            [
                "dependency:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
                f"-DoutputDirectory={dl}",
            ],
        )
        tar = dl / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
        home.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as tf:
            tf.extractall(home, filter="data")
        tar.unlink()
        (home / ".complete").touch()
    return True


def _mvn(mvn: str, args: list[str]) -> None:
    proc = subprocess.run(
        [mvn, "-B", "-q", *args], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SandboxError(f"Maven failed to resolve the sandbox's jars:\n{tail}")
