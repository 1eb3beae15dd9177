"""Checks that a broker re-forms a consumer group whose leader leaves while
the group is re-forming (tansu/group.patch; README.md, item 4).

Two consumers of a new 4-partition topic: the first forms the group and
leads it; the second joins, so the group re-forms; the first leaves before
it has joined again. Apache Kafka then makes the second the leader and gives
it every partition within a few seconds. Unpatched tansu keeps the departed
member as the leader and the second never gets a partition.

Usage: check_group.py BOOTSTRAP. Exit 0 when the second consumer holds every
partition within 40 s, 1 otherwise. Needs confluent-kafka (install.sh's venv).
"""
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4


def main(bootstrap: str) -> int:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"d06-check-group-{tag}", f"d06-check-group-{tag}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    except Exception as e:  # noqa: BLE001 - any failure here means no broker to check
        print(f"check_group: could not create topic {topic} on {bootstrap}: {e!r}", file=sys.stderr)
        return 1

    assigned: dict[str, list[int]] = {}

    def consumer(name: str) -> Consumer:
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": f"check-group-{name}",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 0,
        })

        def on_assign(_c, parts):
            assigned[name] = [p.partition for p in parts]

        c.subscribe([topic], on_assign=on_assign)
        return c

    def poll_until(c: Consumer, done, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            c.poll(0.1)
        return done()

    leader = consumer("leader")
    if not poll_until(leader, lambda: len(assigned.get("leader", [])) == PARTITIONS, 30):
        print(f"check_group: the first consumer was never assigned {topic}", file=sys.stderr)
        return 1
    follower = consumer("follower")
    poll_until(follower, lambda: False, 2)  # its join has the group re-forming
    leader.close()  # LeaveGroup before the leader joined again
    ok = poll_until(follower, lambda: len(assigned.get("follower", [])) == PARTITIONS, 40)
    follower.close()
    admin.delete_topics([topic])
    if not ok:
        print(
            f"check_group: after its leader left mid-rebalance, group {group} gave the remaining "
            f"member {assigned.get('follower', [])} of {PARTITIONS} partitions in 40 s",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
