//! The two gauges the rule `D06DailyAlertsNotSent` reads, kept for one job
//! per tracked province.
//!
//! Each job has a due time (its next send, 0 once its campaign is over)
//! and a last success. The gauges show the job with the earliest due time
//! that is still owed, with that job's last success: the rule fires when
//! that send is 30 minutes late, whichever province it is. When it
//! succeeds, its due time moves to the next day and the next job owed shows.

use std::sync::{Arc, Mutex, PoisonError};

use sinks::prometheus::Metrics;

/// Due times and last successes of several jobs behind one pair of gauges.
#[derive(Debug)]
pub struct AlertGauges {
    metrics: Arc<Metrics>,
    /// Per job: (due, last success), seconds since the epoch (0: none).
    jobs: Mutex<Vec<(f64, f64)>>,
}

impl AlertGauges {
    /// The gauges of `jobs` jobs, numbered from 0.
    pub fn new(metrics: Arc<Metrics>, jobs: usize) -> Arc<Self> {
        Arc::new(AlertGauges { metrics, jobs: Mutex::new(vec![(0.0, 0.0); jobs]) })
    }

    /// Job `job`'s next send (0: none any more).
    pub(crate) fn set_due(&self, job: usize, due: f64) {
        self.update(job, |j| j.0 = due);
    }

    /// Job `job` succeeded at `at`.
    pub(crate) fn set_success(&self, job: usize, at: f64) {
        self.update(job, |j| j.1 = at);
    }

    fn update(&self, job: usize, f: impl FnOnce(&mut (f64, f64))) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(j) = jobs.get_mut(job) {
            f(j);
        }
        let (due, last) = shown(&jobs);
        self.metrics.alerts_due.set(due);
        self.metrics.alerts_last_success.set(last);
    }
}

/// What the gauges show: the owed job due first, with its last success;
/// with none owed, no due time and the latest success.
fn shown(jobs: &[(f64, f64)]) -> (f64, f64) {
    let owed = jobs.iter().filter(|(due, _)| *due > 0.0).min_by(|a, b| a.0.total_cmp(&b.0));
    match owed {
        Some(j) => *j,
        None => (0.0, jobs.iter().map(|j| j.1).fold(0.0, f64::max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owed_job_due_first_shows_until_it_succeeds() {
        // Province A sent today (due tomorrow); B failed today (still due today at 100).
        assert_eq!(shown(&[(200.0, 110.0), (100.0, 50.0)]), (100.0, 50.0));
        // B succeeds: both due tomorrow, the gauges show a success after nothing due yet.
        assert_eq!(shown(&[(200.0, 110.0), (200.0, 120.0)]), (200.0, 110.0));
        // A's campaign is over: only B counts.
        assert_eq!(shown(&[(0.0, 110.0), (100.0, 50.0)]), (100.0, 50.0));
        assert_eq!(shown(&[(0.0, 110.0), (0.0, 120.0)]), (0.0, 120.0));
    }
}
