"""The two JVM services: an Apache Kafka broker (KRaft) and Apicurio Registry.

Kafka: one combined broker+controller node on 127.0.0.1 with three listeners, every one
authenticated with SASL/PLAIN: the client listener (SASL_PLAINTEXT), a TLS one (SASL_SSL,
certificate from the sandbox's own CA, see ``_tls``) and the controller listener
(SASL_PLAINTEXT, ``sasl.mechanism.controller.protocol=PLAIN``). The controller listener
knows only the operator, who is the one super user: the broker registers with its controller
as ``User:operator``, so no ``User:ANONYMOUS`` is needed, and an unauthenticated client on the
controller port is refused. ``StandardAuthorizer`` with no allow-everyone fallback; customers
get ACLs.

Registry: Apicurio Registry's Confluent-compatible API (ccompat v7) with HTTP basic auth
from embedded users, role-based authorisation (customers read-only), BACKWARD compatibility
as a global rule, and an H2 database on disk so schema ids survive a restart.

Why a customer's registry user can read every customer's subjects: Apicurio 3.3 authorises
by role (``sr-readonly`` may read every artifact) and by owner, and owner-only authorisation
(``apicurio.auth.owner-only-authorization``) limits *writes* to an artifact's creator; it has
no read permission per artifact or per group, and the ccompat API maps every subject into
the one default group. Per-customer reads would take a filtering proxy in front of the
registry. Schemas are not customer data (every customer gets the same published schemas), so
the sandbox accepts this; Kafka ACLs keep every customer's records apart.
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
from ._state import HOST, OPERATOR, State, make_private_dir, write_private
from ._tls import broker_pem_path, ensure_certificates, server_cert_path, server_key_path

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


def _jaas(state: State, customers: bool) -> str:
    users = [f'user_{OPERATOR}="{state.operator.kafka_password}"']
    if customers:
        users += [f'user_{name}="{c.kafka_password}"' for name, c in state.customers.items()]
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{OPERATOR}" password="{state.operator.kafka_password}" {" ".join(users)};'
    )


def _listener_properties(state: State, root: Path) -> list[str]:
    p = state.ports
    tls = f"{HOST}:{p['kafka_tls']}"
    return [
        f"listeners=SASL_PLAINTEXT://{HOST}:{p['kafka']},TLS://{tls},"
        f"CONTROLLER://{HOST}:{p['controller']}",
        f"advertised.listeners=SASL_PLAINTEXT://{HOST}:{p['kafka']},TLS://{tls}",
        "listener.security.protocol.map="
        "SASL_PLAINTEXT:SASL_PLAINTEXT,TLS:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        "sasl.mechanism.inter.broker.protocol=PLAIN",
        # The controller listener authenticates too; only the operator is known there.
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={_jaas(state, customers=False)}",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={_jaas(state, customers=True)}",
        f"listener.name.tls.plain.sasl.jaas.config={_jaas(state, customers=True)}",
        "listener.name.tls.ssl.keystore.type=PEM",
        f"listener.name.tls.ssl.keystore.location={broker_pem_path(root)}",
        "listener.name.tls.ssl.client.auth=none",
    ]


def _server_properties(state: State, root: Path, data: Path) -> str:
    # Comments stay on their own lines: in .properties an inline '#' becomes part of the value.
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{state.ports['controller']}",
            *_listener_properties(state, root),
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "# The operator is the broker's own principal on the controller listener too.",
            f"super.users=User:{OPERATOR}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "# The default 50 partitions cost seconds to create on a laptop (first up).",
            "transaction.state.log.num.partitions=3",
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


def _format_storage(java: str, classpath: str, props: Path) -> None:
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    fmt = subprocess.run(
        # '=': a random id may start with '-'
        [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(props),
            "-g",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        umask=0o077,
    )
    if fmt.returncode != 0:
        raise SandboxError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")


def start_broker(root: Path, cache: Path, state: State) -> int:
    java = find_java(17)
    kdir = root / "kafka"
    data = kdir / "data"
    make_private_dir(kdir)
    ensure_certificates(root)
    props = kdir / "server.properties"
    write_private(props, _server_properties(state, root, data))
    log = kdir / "broker.log"
    write_private(kdir / "log4j2.properties", LOG4J2.format(log=log))
    classpath = f"{kafka_libs(cache)}/*"
    if not (data / "meta.properties").exists():
        _format_storage(java, classpath, props)
    argv = [
        java,
        "-Xms128m",
        f"-Xmx{os.environ.get('TU_SANDBOX_KAFKA_HEAP', '768m')}",
        "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
        _procs.jvm_marker(root),
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    pid = _procs.spawn(argv, kdir / "broker.stdout")
    ports = [state.ports[k] for k in ("kafka", "kafka_tls", "controller")]
    # Readiness: this very process listens on every port (not some other sandbox's broker).
    _procs.wait_for(
        "the Kafka broker",
        lambda: all(_procs.listens(pid, port) for port in ports),
        90,
        pid,
        root,
        log,
    )
    return pid


def spawn_registry(root: Path, cache: Path, state: State) -> int:
    """Start the registry without waiting (it needs nothing from the broker)."""
    java = find_registry_java(21)
    rdir = root / "registry"
    make_private_dir(rdir)
    ensure_certificates(root)
    p = state.ports
    props = [
        f"quarkus.http.host={HOST}",
        f"quarkus.http.port={p['registry']}",
        # https beside http, with the broker's certificate (the sandbox's own CA).
        f"quarkus.http.ssl-port={p['registry_tls']}",
        f"quarkus.http.ssl.certificate.files={server_cert_path(root)}",
        f"quarkus.http.ssl.certificate.key-files={server_key_path(root)}",
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
    write_private(rdir / "config" / "application.properties", "\n".join(props) + "\n")
    argv = [
        java,
        "-Xms64m",
        f"-Xmx{os.environ.get('TU_SANDBOX_REGISTRY_HEAP', '512m')}",
        "-XX:TieredStopAtLevel=1",
        _procs.jvm_marker(root),
        "-jar",
        str(apicurio_home(cache) / "quarkus-run.jar"),
    ]
    return _procs.spawn(argv, rdir / "registry.stdout", cwd=rdir)


def wait_registry(root: Path, state: State, pid: int) -> None:
    """Until the registry process ``pid`` itself serves both ports and reports ready."""
    p = state.ports
    url = f"http://{HOST}:{p['registry_management']}/health/ready"

    def ready() -> bool:
        ports = ("registry", "registry_management", "registry_tls")
        held = all(_procs.listens(pid, p[k]) for k in ports)
        return held and _http_ok(url)

    log = root / "registry" / "registry.stdout"
    _procs.wait_for("the Schema Registry", ready, 180, pid, root, log)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback URL we built)
            return bool(r.status == 200)
    except OSError:
        return False
