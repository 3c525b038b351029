"""A real Apache Kafka 4.4.0 broker in KRaft mode (broker and controller in one JVM), assembled
from its Maven Central jars (tests/peers/kafka/pom.xml; scripts/test.sh copies them into
.peers/kafka/lib, or KAFKA_LIB names another directory), on free loopback ports: the storage is
formatted with kafka.tools.StorageTool, then kafka.Kafka runs in the foreground of the test.

The test's own Kafka client is confluent-kafka (PyPI; librdkafka inside the wheel): it creates
topics, produces and consumes. The other client in the tests is the collector's (franz-go)."""

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import free_port, wait_until
from peers import ROOT, PeerProcess


def kafka_lib() -> Path:
    lib = Path(os.environ.get("KAFKA_LIB", ROOT / ".peers" / "kafka" / "lib"))
    if not any(lib.glob("kafka_2.13-*.jar")):
        pytest.fail(f"the Kafka broker's jars are not in {lib} (scripts/test.sh copies them there)")
    return lib


def java() -> str:
    path = shutil.which("java")
    if path is None:
        pytest.fail("java is not installed (scripts/test.sh installs a JDK)")
    return path


class Kafka(PeerProcess):
    NAME = "kafka"
    START_TIMEOUT = 90

    # The users of the secured listeners (`secure=True`): PLAIN from the JAAS config, SCRAM
    # credentials written into the metadata when the storage is formatted.
    USERS = {"PLAIN": ("alice", "alice-secret"), "SCRAM-SHA-256": ("bob", "bob-secret"),
             "SCRAM-SHA-512": ("carol", "carol-secret")}

    def __init__(self, tmp: Path, secure: bool = False, **props: str):
        self.tmp = tmp
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.dir = tmp / "kafka"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
        }
        format_args = []
        if secure:
            format_args = self._secure()
        self.props.update(props)
        self.config = self.dir / "server.properties"
        self.config.write_text("".join(f"{k}={v}\n" for k, v in self.props.items()))
        self.classpath = f"{kafka_lib()}/*"
        # A small heap and the serial collector: the machine has two cores.
        self.env = dict(os.environ)
        self.jvm = [java(), "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-Dlog4j2.level=warn", "-cp", self.classpath]
        fmt = subprocess.run(
            self.jvm + ["kafka.tools.StorageTool", "format", "--standalone", "-t", self._cluster_id(), "-c", str(self.config), *format_args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            pytest.fail(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        self.start(self.jvm + ["kafka.Kafka", str(self.config)], self.dir / "kafka.log", env=self.env)

    def _secure(self) -> list[str]:
        """Three more listeners: SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), SSL
        requiring a client certificate (mutual TLS), and SASL_SSL (server-authenticated TLS,
        SCRAM-SHA-512). Certificates from `pki.make_pki` in `self.pki`; the key store and trust
        store are PEM files. Returns the storage tool's `--add-scram` arguments."""
        from pki import make_pki

        self.pki = self.dir / "pki"
        self.pki.mkdir(exist_ok=True)
        make_pki(self.pki, client=True)
        keystore = self.pki / "server-keystore.pem"
        keystore.write_text((self.pki / "server-key.pem").read_text() + (self.pki / "server.pem").read_text())
        self.sasl_port, self.ssl_port, self.sasl_ssl_port = free_port(), free_port(), free_port()
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.ssl_bootstrap = f"localhost:{self.ssl_port}"
        self.sasl_ssl_bootstrap = f"localhost:{self.sasl_ssl_port}"
        listeners = (f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port},"
                     f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}")
        advertised = (f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port},SSL://localhost:{self.ssl_port},"
                      f"SASL_SSL://localhost:{self.sasl_ssl_port}")
        self.props["listeners"] += "," + listeners
        self.props["advertised.listeners"] += "," + advertised
        self.props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"
        plain_user, plain_pw = self.USERS["PLAIN"]
        plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{plain_user}="{plain_pw}";'
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        self.props.update({
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain,
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki / "ca.pem"),
            "listener.name.ssl.ssl.client.auth": "required",
        })
        args = []
        for mech, (user, pw) in self.USERS.items():
            if mech.startswith("SCRAM"):
                args += ["--add-scram", f"{mech}=[name={user},password={pw}]"]
        return args

    def _cluster_id(self) -> str:
        out = subprocess.run(self.jvm + ["kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            pytest.fail(f"kafka random-uuid failed:\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            from confluent_kafka.admin import AdminClient

            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
            return len(md.brokers) == 1
        except Exception:
            return False

    def admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str, partitions: int = 1):
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        assert wait_until(lambda: name in self.admin().list_topics(timeout=5).topics, 20), f"topic {name} not created"

    def consume(self, topic: str, count: int, timeout: float = 30.0, group: str | None = None) -> list:
        """Reads at least `count` messages of `topic` from the beginning (or what arrives
        before `timeout`); returns confluent_kafka Message objects."""
        from confluent_kafka import Consumer

        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group or f"test-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([topic])
        out = []
        end = time.time() + timeout
        try:
            while len(out) < count and time.time() < end:
                m = c.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    # _PARTITION_EOF, and a topic the producer under test has not created yet.
                    if m.error().code() in (-191, 3):
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                out.append(m)
        finally:
            c.close()
        return out

    def produce(self, topic: str, values: list[bytes], key: bytes | None = None, headers=None):
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        for v in values:
            p.produce(topic, value=v, key=key, headers=headers)
        assert p.flush(30) == 0, "messages left unsent"
