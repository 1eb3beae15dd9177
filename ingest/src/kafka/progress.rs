//! Replay progress of the source topics, from the lag probe's measurements:
//! per topic the position, the end, the rate the router reads at and the
//! time left; whether the instance is far behind (readiness, the board) and
//! the moment it catches up. Pure: the caller brings the clock and logs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{PartitionLag, SourcePartition};

/// Weight of the newest rate sample in the smoothed rate.
const SMOOTHING: f64 = 0.3;

/// One source topic's progress, summed over the partitions this instance reads.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicProgress {
    /// The topic.
    pub topic: String,
    /// Sum of the committed next offsets.
    pub position: i64,
    /// Sum of the high watermarks.
    pub end: i64,
    /// Messages per second the router moved this topic's position lately
    /// (smoothed; 0 until two measurements).
    pub rate: f64,
}

impl TopicProgress {
    /// Messages between the position and the end.
    pub fn lag(&self) -> i64 {
        (self.end - self.position).max(0)
    }

    /// Time left at the current rate (none while nothing moves).
    pub fn eta(&self) -> Option<Duration> {
        eta(self.lag(), self.rate)
    }
}

fn eta(lag: i64, rate: f64) -> Option<Duration> {
    if lag == 0 {
        return Some(Duration::ZERO);
    }
    (rate >= 0.5).then(|| Duration::from_secs_f64(lag as f64 / rate))
}

/// What one measurement means for the operator.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// More than the threshold behind; `log` says the interval has come to log it.
    Behind {
        /// Every topic this instance reads.
        topics: Vec<TopicProgress>,
        /// Time to log the progress.
        log: bool,
    },
    /// Within the threshold for the first time since being behind (or since
    /// the start): said once.
    CaughtUp {
        /// How long the instance was behind (zero if it never was).
        after: Duration,
    },
    /// Within the threshold, as before.
    Current,
}

/// Where the instance stands overall (for `/readyz` and the board).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overall {
    /// Messages left over every topic.
    pub lag: i64,
    /// Messages read since the start of the replay (of those measured).
    pub done: i64,
    /// Messages per second over every topic.
    pub rate: f64,
    /// Whether the lag exceeds the threshold.
    pub behind: bool,
}

impl Overall {
    /// Time left at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        eta(self.lag, self.rate)
    }
}

/// Tracks progress across measurements.
#[derive(Debug)]
pub struct Progress {
    threshold: i64,
    log_every: Duration,
    previous: Option<(Instant, BTreeMap<String, i64>)>,
    rates: BTreeMap<String, f64>,
    first_positions: BTreeMap<String, i64>,
    behind_since: Option<Instant>,
    last_log: Option<Instant>,
    caught_up_said: bool,
    overall: Overall,
    /// Per partition: its position and when it last moved (or was first seen).
    moved: BTreeMap<SourcePartition, (i64, Instant)>,
}

impl Progress {
    /// Behind means more than `threshold` messages left over all source
    /// topics; progress is logged at most every `log_every` while behind.
    pub fn new(threshold: u64, log_every: Duration) -> Self {
        Progress {
            threshold: i64::try_from(threshold).unwrap_or(i64::MAX),
            log_every,
            previous: None,
            rates: BTreeMap::new(),
            first_positions: BTreeMap::new(),
            behind_since: None,
            last_log: None,
            caught_up_said: false,
            overall: Overall::default(),
            moved: BTreeMap::new(),
        }
    }

    /// Takes one measurement made at `at`.
    pub fn observe(&mut self, at: Instant, measured: &[PartitionLag]) -> Step {
        let mut moved = BTreeMap::new();
        for m in measured {
            let since = match self.moved.get(&m.key) {
                Some((next, since)) if *next == m.next => *since,
                _ => at,
            };
            moved.insert(m.key.clone(), (m.next, since));
        }
        self.moved = moved;
        let mut topics: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for m in measured {
            let t = topics.entry(m.key.topic.to_string()).or_default();
            t.0 += m.next;
            t.1 += m.high.max(m.next);
        }
        let positions: BTreeMap<String, i64> = topics.iter().map(|(t, (p, _))| (t.clone(), *p)).collect();
        if let Some((then, before)) = &self.previous {
            let secs = at.saturating_duration_since(*then).as_secs_f64();
            if secs > 0.0 {
                for (topic, now) in &positions {
                    // A topic new to this instance (rebalance) has no rate yet.
                    let Some(was) = before.get(topic) else { continue };
                    let sample = ((now - was).max(0)) as f64 / secs;
                    let r = self.rates.entry(topic.clone()).or_insert(sample);
                    *r = SMOOTHING * sample + (1.0 - SMOOTHING) * *r;
                }
            }
        }
        self.previous = Some((at, positions));
        let progress: Vec<TopicProgress> = topics
            .into_iter()
            .map(|(topic, (position, end))| {
                let rate = self.rates.get(&topic).copied().unwrap_or(0.0);
                TopicProgress { topic, position, end, rate }
            })
            .collect();
        // Per topic, so a topic leaving this instance (rebalance) takes nothing off.
        let done: i64 = progress
            .iter()
            .map(|t| (t.position - *self.first_positions.entry(t.topic.clone()).or_insert(t.position)).max(0))
            .sum();
        let lag: i64 = progress.iter().map(TopicProgress::lag).sum();
        let behind = lag > self.threshold;
        self.overall = Overall { lag, done, rate: progress.iter().map(|t| t.rate).sum(), behind };
        if behind {
            self.behind_since.get_or_insert(at);
            let log = self.last_log.is_none_or(|l| at.saturating_duration_since(l) >= self.log_every);
            if log {
                self.last_log = Some(at);
            }
            self.caught_up_said = false;
            return Step::Behind { topics: progress, log };
        }
        let since = self.behind_since.take();
        self.last_log = None;
        if self.caught_up_said {
            return Step::Current;
        }
        self.caught_up_said = true;
        Step::CaughtUp { after: since.map(|s| at.saturating_duration_since(s)).unwrap_or_default() }
    }

    /// Partitions with messages waiting whose position has not moved for
    /// `after` (as of the measurement at `at`): a stalled router. A lag of
    /// one is not waiting: a transactional producer's last commit marker
    /// takes an offset no reader ever gets.
    pub fn stalled(&self, at: Instant, after: Duration, measured: &[PartitionLag]) -> Vec<PartitionLag> {
        measured
            .iter()
            .filter(|m| m.lag() > 1)
            .filter(|m| self.moved.get(&m.key).is_some_and(|(_, since)| at.saturating_duration_since(*since) >= after))
            .cloned()
            .collect()
    }

    /// The latest overall figures.
    pub fn overall(&self) -> Overall {
        self.overall
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kafka::SourcePartition;

    fn lag(topic: &str, partition: i32, next: i64, high: i64) -> PartitionLag {
        PartitionLag { key: SourcePartition { topic: Arc::from(topic), partition }, next, high }
    }

    #[test]
    fn behind_logs_at_the_interval_with_rate_and_eta_then_says_caught_up_once() {
        let t0 = Instant::now();
        let mut p = Progress::new(1_000, Duration::from_secs(30));
        let s = p.observe(t0, &[lag("a", 0, 0, 50_000), lag("a", 1, 0, 50_000), lag("b", 0, 10, 10)]);
        let Step::Behind { topics, log } = s else { panic!("{s:?}") };
        assert!(log, "the first measurement behind is logged");
        assert_eq!(topics[0], TopicProgress { topic: "a".into(), position: 0, end: 100_000, rate: 0.0 });
        assert_eq!(topics[0].eta(), None, "no rate yet, no ETA");
        assert_eq!(topics[1].lag(), 0);
        assert!(p.overall().behind);

        // 10 s later a has moved 20,000: 2,000/s, 80,000 left → 40 s.
        let s = p.observe(t0 + Duration::from_secs(10), &[lag("a", 0, 10_000, 50_000), lag("a", 1, 10_000, 50_000)]);
        let Step::Behind { topics, log } = s else { panic!("{s:?}") };
        assert!(!log, "10 s after the last log line: quiet");
        assert_eq!(topics[0].rate, 2_000.0);
        assert_eq!(topics[0].eta(), Some(Duration::from_secs(40)));
        assert_eq!(p.overall().done, 20_000);

        let s = p.observe(t0 + Duration::from_secs(30), &[lag("a", 0, 30_000, 50_000), lag("a", 1, 30_000, 50_000)]);
        assert!(matches!(s, Step::Behind { log: true, .. }), "{s:?}");

        let s = p.observe(t0 + Duration::from_secs(45), &[lag("a", 0, 49_900, 50_000), lag("a", 1, 49_900, 50_000)]);
        assert_eq!(s, Step::CaughtUp { after: Duration::from_secs(45) });
        assert!(!p.overall().behind);
        let s = p.observe(t0 + Duration::from_secs(50), &[lag("a", 0, 50_000, 50_000), lag("a", 1, 50_000, 50_000)]);
        assert_eq!(s, Step::Current, "caught up is said once");

        // Falling behind again (a burst) and catching up is said again.
        let s = p.observe(t0 + Duration::from_secs(60), &[lag("a", 0, 50_000, 60_000), lag("a", 1, 50_000, 50_000)]);
        assert!(matches!(s, Step::Behind { log: true, .. }), "{s:?}");
        let s = p.observe(t0 + Duration::from_secs(70), &[lag("a", 0, 60_000, 60_000), lag("a", 1, 50_000, 50_000)]);
        assert_eq!(s, Step::CaughtUp { after: Duration::from_secs(10) });
    }

    #[test]
    fn a_partition_with_messages_waiting_and_no_move_for_the_limit_is_stalled() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(60);
        let mut p = Progress::new(1_000, Duration::from_secs(30));
        let first = [lag("a", 0, 10, 100), lag("a", 1, 50, 50), lag("a", 2, 7, 8)];
        p.observe(t0, &first);
        assert!(p.stalled(t0, limit, &first).is_empty());
        let later = [lag("a", 0, 10, 120), lag("a", 1, 50, 50), lag("a", 2, 7, 8)];
        p.observe(t0 + Duration::from_secs(61), &later);
        let stalled = p.stalled(t0 + Duration::from_secs(61), limit, &later);
        assert_eq!(stalled, vec![lag("a", 0, 10, 120)], "a/1 is idle, a/2 ends with a commit marker: not stalled");
        let moving = [lag("a", 0, 11, 120), lag("a", 1, 50, 50)];
        p.observe(t0 + Duration::from_secs(62), &moving);
        assert!(p.stalled(t0 + Duration::from_secs(62), limit, &moving).is_empty(), "it moved");
    }

    #[test]
    fn an_instance_that_starts_current_says_so_once() {
        let t0 = Instant::now();
        let mut p = Progress::new(100, Duration::from_secs(30));
        assert_eq!(p.observe(t0, &[lag("a", 0, 5, 5)]), Step::CaughtUp { after: Duration::ZERO });
        assert_eq!(p.observe(t0 + Duration::from_secs(5), &[lag("a", 0, 50, 150)]), Step::Current, "within 100");
    }

    #[test]
    fn a_stalled_replay_has_no_eta_and_a_high_watermark_below_the_position_is_no_negative_lag() {
        let t0 = Instant::now();
        let mut p = Progress::new(0, Duration::from_secs(1));
        p.observe(t0, &[lag("a", 0, 100, 1_000)]);
        let s = p.observe(t0 + Duration::from_secs(60), &[lag("a", 0, 100, 1_000)]);
        let Step::Behind { topics, .. } = s else { panic!("{s:?}") };
        assert_eq!(topics[0].rate, 0.0);
        assert_eq!(topics[0].eta(), None);
        let s = p.observe(t0 + Duration::from_secs(61), &[lag("a", 0, 1_000, 900)]);
        assert_eq!(s, Step::CaughtUp { after: Duration::from_secs(61) });
        assert_eq!(p.overall().lag, 0);
    }
}
