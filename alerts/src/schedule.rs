//! When the alerts of a day are due and how long they stay active.

use aggregator::plan::Plan;
use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use crate::job::{ACTIVE_FOR, WAKE_EVERY};

/// The next day to send for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Next {
    /// The local day.
    pub(crate) day: NaiveDate,
    /// Its `send_at` instant (in the past when already due).
    pub(crate) at: DateTime<Utc>,
    /// The end of that local day: the attempts stop there.
    pub(crate) deadline: DateTime<Utc>,
}

/// The next campaign day whose alerts are due, given the time `now` and the
/// last day already handled (`done`): today if its `send_at` has not passed
/// or it is not over yet (due at once), else a later day. `None` when the
/// campaign is over.
pub(crate) fn next_send(
    plan: &Plan,
    tz: Tz,
    send_at: NaiveTime,
    now: DateTime<Utc>,
    done: Option<NaiveDate>,
) -> Option<Next> {
    let today = now.with_timezone(&tz).date_naive();
    let mut day = today.max(plan.start());
    if let Some(d) = done.and_then(|d| d.succ_opt()) {
        day = day.max(d);
    }
    if !plan.is_running(day) {
        return None;
    }
    let next_midnight = day.checked_add_days(Days::new(1))?;
    Some(Next { day, at: local_instant(day, send_at, tz), deadline: local_instant(next_midnight, NaiveTime::MIN, tz) })
}

/// The instant of local `time` on `day` in `tz`: the earlier one when the
/// clock is set back over it, the first instant after the gap when the
/// clock is set forward over it.
pub(crate) fn local_instant(day: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => (1..=24 * 60)
            .find_map(|m| tz.from_local_datetime(&(naive + chrono::TimeDelta::minutes(m))).earliest())
            .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc)),
    }
}

/// `endsAt`: 24 h after `starts_at`, or after `now` when that is already past.
pub(crate) fn ends_at(starts_at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let ends = starts_at + ACTIVE_FOR;
    if ends > now {
        ends
    } else {
        now + ACTIVE_FOR
    }
}

/// Sleeps until the wall clock reaches `at`; false when shut down first.
pub(crate) async fn sleep_until(at: DateTime<Utc>, shutdown: &CancellationToken) -> bool {
    loop {
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(left.min(WAKE_EVERY)) => {}
        }
    }
}
