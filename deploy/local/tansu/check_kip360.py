"""Reproduces producer.patch's case (deploy/local/tansu/README.md, item 5).

A transactional producer's messages time out while the persistent broker is
killed; after it is back, the commit fails, and aborting asks InitProducerId
with the producer's current id and epoch (KIP-360). Unpatched tansu 0.6.0
panics there for good; the patched build bumps the epoch and the producer
carries on. Kills and starts `kafka-pg` (deploy/local), so run it by hand,
never beside the tests:

    bash deploy/local/start.sh persistent
    RUST_LOG=warn,'tansu_storage::pg[init_producer]=debug' bash deploy/local/start.sh kafka-pg  # optional
    "$D06_VENV/bin/python" deploy/local/tansu/check_kip360.py 127.0.0.1:19492

Exit status 0 when a transaction commits after the bump, 1 otherwise.
"""

import subprocess
import sys
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main(bootstrap: str) -> int:
    topic = "kip360-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": topic,
        "message.timeout.ms": 3000,
        "transaction.timeout.ms": 10000,
    })
    p.init_transactions(10)
    p.begin_transaction()
    p.produce(topic, b"one")
    p.commit_transaction(10)
    print("first transaction committed", flush=True)
    subprocess.run(["bash", "deploy/local/stop.sh", "--kill", "kafka-pg"], check=True)
    p.begin_transaction()
    p.produce(topic, b"two")
    p.flush(5)
    subprocess.run(["bash", "deploy/local/start.sh", "kafka-pg"], check=True)
    for _ in range(4):
        try:
            p.commit_transaction(10)
            print("a transaction committed after the outage: the producer carries on", flush=True)
            return 0
        except KafkaException as e:
            print("commit failed:", e.args[0], flush=True)
            if not e.args[0].txn_requires_abort():
                return 1
        try:
            p.abort_transaction(10)
            print("aborted", flush=True)
        except KafkaException as e:
            print("abort failed:", e.args[0], flush=True)
            return 1
        p.begin_transaction()
        p.produce(topic, b"again")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
