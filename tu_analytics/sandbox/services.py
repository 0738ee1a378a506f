"""The two JVM services: an Apache Kafka broker (KRaft) and Apicurio Registry.

Kafka: one combined broker+controller node; the client listener is SASL_PLAINTEXT/PLAIN on
127.0.0.1, the controller listener PLAINTEXT on 127.0.0.1. ``StandardAuthorizer`` with no
allow-everyone fallback: only the operator (and ``User:ANONYMOUS``, the principal the broker
uses on the controller listener to register itself) are super users; customers get ACLs.

Registry: Apicurio Registry's Confluent-compatible API (ccompat v7) with HTTP basic auth
from embedded users, role-based authorisation (customers read-only), BACKWARD compatibility
as a global rule, and an H2 database on disk so schema ids survive a restart.
"""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

from ..errors import SandboxError
from . import _procs
from ._jars import apicurio_home, find_java, find_registry_java, kafka_libs
from ._state import HOST, OPERATOR, State

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _server_properties(state: State, data: Path) -> str:
    p = state.ports
    users = " ".join(
        [f'user_{OPERATOR}="{state.operator.kafka_password}"']
        + [f'user_{name}="{c.kafka_password}"' for name, c in state.customers.items()]
    )
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{OPERATOR}" password="{state.operator.kafka_password}" {users};'
    )
    # Comments stay on their own lines: in .properties an inline '#' becomes part of the value.
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{p['controller']}",
            f"listeners=SASL_PLAINTEXT://{HOST}:{p['kafka']},CONTROLLER://{HOST}:{p['controller']}",
            f"advertised.listeners=SASL_PLAINTEXT://{HOST}:{p['kafka']}",
            "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "# ANONYMOUS is the broker itself on the PLAINTEXT controller listener (registration).",
            f"super.users=User:{OPERATOR};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=336",
            "",
        ]
    )


def marker(root: Path) -> str:
    return str(root)


def start_broker(root: Path, cache: Path, state: State) -> int:
    java = find_java(17)
    kdir = root / "kafka"
    data = kdir / "data"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(_server_properties(state, data))
    props.chmod(0o600)
    log = kdir / "broker.log"
    (kdir / "log4j2.properties").write_text(LOG4J2.format(log=log))
    classpath = f"{kafka_libs(cache)}/*"
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",  # '=': a random id may start with '-'

                "-c",
                str(props),
                "-g",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise SandboxError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    argv = [
        java,
        "-Xms128m",
        f"-Xmx{os.environ.get('TU_SANDBOX_KAFKA_HEAP', '768m')}",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",
        f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
        f"-Dtu.sandbox={marker(root)}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    pid = _procs.spawn(argv, kdir / "broker.stdout")
    _procs.wait_for(
        "the Kafka broker",
        lambda: _procs.port_open(state.ports["kafka"]),
        90,
        pid,
        marker(root),
        log,
    )
    return pid


def start_registry(root: Path, cache: Path, state: State) -> int:
    java = find_registry_java(21)
    rdir = root / "registry"
    rdir.mkdir(parents=True, exist_ok=True)
    p = state.ports
    props = [
        f"quarkus.http.host={HOST}",
        f"quarkus.http.port={p['registry']}",
        f"quarkus.management.host={HOST}",
        f"quarkus.management.port={p['registry_management']}",
        "quarkus.oidc.tenant-enabled=false",
        "quarkus.http.auth.basic=true",
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=true",
        f"quarkus.security.users.embedded.users.{OPERATOR}={state.operator.registry_password}",
        f"quarkus.security.users.embedded.roles.{OPERATOR}=sr-admin",
        "apicurio.auth.role-based-authorization=true",
        "apicurio.rules.global.compatibility=BACKWARD",
        f"apicurio.datasource.url=jdbc:h2:file:{rdir / 'db'};DB_CLOSE_ON_EXIT=FALSE",
        "quarkus.log.level=WARN",
        "quarkus.log.file.enabled=true",
        f"quarkus.log.file.path={rdir / 'registry.log'}",
        "quarkus.log.console.enabled=false",
    ]
    for c in state.customers.values():
        props.append(
            f"quarkus.security.users.embedded.users.{c.registry_username}={c.registry_password}"
        )
        props.append(f"quarkus.security.users.embedded.roles.{c.registry_username}=sr-readonly")
    # Passwords go through a file, not the command line, where `ps` would show them.
    # Quarkus reads ./config/application.properties from its working directory.
    conf = rdir / "config"
    conf.mkdir(exist_ok=True)
    (conf / "application.properties").write_text("\n".join(props) + "\n")
    (conf / "application.properties").chmod(0o600)
    argv = [
        java,
        "-Xms64m",
        f"-Xmx{os.environ.get('TU_SANDBOX_REGISTRY_HEAP', '512m')}",
        "-XX:TieredStopAtLevel=1",
        f"-Dtu.sandbox={marker(root)}",
        "-jar",
        str(apicurio_home(cache) / "quarkus-run.jar"),
    ]
    log = rdir / "registry.stdout"
    pid = _procs.spawn(argv, log, cwd=rdir)
    url = f"http://{HOST}:{p['registry_management']}/health/ready"
    _procs.wait_for("the Schema Registry", lambda: _http_ok(url), 180, pid, marker(root), log)
    return pid


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback URL we built)
            return bool(r.status == 200)
    except OSError:
        return False
