//! The watch, shared by both stages' consumers, for a member its group
//! leaves out: one that subscribed, or lost its assignment (a session that
//! timed out, a stall, a broker restart), and is given none.
//!
//! librdkafka calls a member back after every rebalance it takes part in,
//! with an empty assignment when there is nothing for it to do, and Kafka
//! completes a rebalance within its rebalance timeout, which librdkafka
//! sets to `max.poll.interval.ms` (members that have not joined by then are
//! dropped from it). So a member that has heard nothing for that long since
//! it subscribed or lost its assignment is in no rebalance that will
//! complete: it leaves the group and joins again. Seen needed on tansu
//! (ARCHITECTURE.md, "A member left out joins again"); a member merely
//! idle is never caught.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use tracing::warn;

/// Kept in a consumer's context; told of its rebalances, checked by its
/// poll loop when idle.
#[derive(Debug)]
pub(crate) struct LeftOutWatch {
    /// Since when the member has had no assignment: since it subscribed,
    /// or since it lost its assignment; `None` once assigned.
    waiting_since: Mutex<Option<Instant>>,
    /// Test only ([`KafkaFault::LeaveGroupOnLost`](super::KafkaFault)):
    /// leave the group at the next loss, once.
    leave_on_lost: AtomicBool,
    /// Set by that loss, for the poll loop.
    leave_now: AtomicBool,
}

impl LeftOutWatch {
    /// A watch for a consumer about to subscribe; `leave_on_lost` arms the
    /// test fault.
    pub(crate) fn new(leave_on_lost: bool) -> Self {
        LeftOutWatch {
            waiting_since: Mutex::new(Some(Instant::now())),
            leave_on_lost: AtomicBool::new(leave_on_lost),
            leave_now: AtomicBool::new(false),
        }
    }

    fn waiting_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.waiting_since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The group called back with an assignment (even an empty one).
    pub(crate) fn assigned(&self) {
        *self.waiting_since() = None;
    }

    /// The group revoked partitions; `lost` as librdkafka says.
    pub(crate) fn revoked(&self, lost: bool) {
        if lost {
            self.waiting_since().get_or_insert_with(Instant::now);
            if self.leave_on_lost.swap(false, Ordering::Relaxed) {
                self.leave_now.store(true, Ordering::Relaxed);
            }
        }
    }

    /// From the poll loop when idle: once `after` has passed since the
    /// subscription or the loss with no assignment, leaves the group and
    /// subscribes to `topics` again (and again each `after` while it
    /// lasts). `name` names the consumer in the log.
    pub(crate) fn check<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topics: &[&str],
        after: Duration,
        name: &str,
    ) -> KafkaResult<()> {
        if self.leave_now.swap(false, Ordering::Relaxed) {
            warn!(consumer = name, "fault point leave_group_on_lost: the consumer leaves its group");
            consumer.unsubscribe();
            return Ok(());
        }
        let waited = self.waiting_since().map(|t| t.elapsed()).filter(|w| *w >= after);
        let Some(waited) = waited else { return Ok(()) };
        warn!(
            consumer = name,
            waited_s = waited.as_secs(),
            "the consumer's group has assigned it nothing since it subscribed or lost its partitions; \
             leaving the group and joining it again"
        );
        consumer.unsubscribe();
        consumer.subscribe(topics)?;
        // Watched again from now: a member still left out tries again.
        *self.waiting_since() = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_subscription_and_a_loss_are_watched_until_an_assignment() {
        let watch = LeftOutWatch::new(false);
        assert!(watch.waiting_since().is_some(), "watched from the subscription");
        watch.assigned();
        assert!(watch.waiting_since().is_none(), "any assignment ends the watch");
        watch.revoked(false);
        assert!(watch.waiting_since().is_none(), "a handover is not a loss");
        watch.revoked(true);
        let since = watch.waiting_since().expect("a loss is watched");
        watch.revoked(true);
        assert_eq!(*watch.waiting_since(), Some(since), "watched from the first loss");
        watch.assigned();
        assert!(watch.waiting_since().is_none());
    }

    #[test]
    fn nothing_happens_before_the_wait_is_over() {
        // A consumer that never connects: the check must not touch it early.
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "d06-membership-test")
            .create()
            .unwrap();
        let watch = LeftOutWatch::new(false);
        watch.check(&consumer, &["t"], Duration::from_secs(3600), "test").unwrap();
        assert_eq!(consumer.subscription().unwrap().count(), 0, "not subscribed by the check");
        watch.check(&consumer, &["t"], Duration::ZERO, "test").unwrap();
        assert_eq!(consumer.subscription().unwrap().count(), 1, "joined again once the wait is over");
        assert!(watch.waiting_since().is_some(), "and watched again");
    }

    #[test]
    fn the_fault_leaves_at_the_first_loss_only() {
        let watch = LeftOutWatch::new(true);
        watch.revoked(false);
        assert!(!watch.leave_now.load(Ordering::Relaxed));
        watch.revoked(true);
        assert!(watch.leave_now.swap(false, Ordering::Relaxed), "armed by the loss");
        watch.revoked(true);
        assert!(!watch.leave_now.load(Ordering::Relaxed), "once");
    }
}
