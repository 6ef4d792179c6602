//! Cron-style schedules: parsing, the next tick, and firing due ticks.
//!
//! A tick fires once across the cluster: every server looks for due
//! schedules, and the store's `fire_schedule` moves the schedule on and
//! creates the tick's request (id `<schedule>-<tick ms>`) in one conditional
//! transaction, so the loser of a race changes nothing. A server that dies
//! leaves nothing behind: the others keep firing. When the whole cluster was
//! down for several ticks, the first due tick fires and the schedule then
//! jumps to its next future tick.

use std::sync::Arc;
use std::time::Duration;

use baton_core::store::{NewRequest, ScheduleRow, Store, StoreError};

use crate::engine::cluster::Cluster;
use crate::engine::executor::Executor;

/// A schedule's cron expression or time zone that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    Expression { expr: String, reason: String },
    #[error("unknown time zone {tz:?} (an IANA name such as \"Europe/Berlin\", or \"UTC\")")]
    TimeZone { tz: String },
}

/// A cron expression read in a time zone: `sec min hour day-of-month month
/// day-of-week`, or the classic five fields (seconds = 0), with croner's
/// syntax (ranges, steps, lists, names, `L`, `#`). Ticks are wall-clock
/// times in the zone; across daylight-saving changes croner's rules hold:
/// a fixed time in a skipped hour fires right after the gap, and a fixed
/// time in a repeated hour fires once, at its first pass.
#[derive(Debug, Clone)]
pub struct Cron {
    pattern: croner::Cron,
    tz: jiff::tz::TimeZone,
}

impl Cron {
    /// Parses `expr` as read in the IANA time zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, CronError> {
        let pattern = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| CronError::Expression {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        let tz =
            jiff::tz::TimeZone::get(tz).map_err(|_| CronError::TimeZone { tz: tz.to_owned() })?;
        Ok(Self { pattern, tz })
    }

    /// The first tick strictly after `after_ms` (ms since the epoch).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = jiff::Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned(self.tz.clone());
        let next = self.pattern.find_next_occurrence(&after, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }
}

/// Fires every schedule due for this server, running as `incarnation`;
/// returns how many ticks it fired.
pub async fn fire_due(store: &dyn Store, me: &str, incarnation: i64) -> Result<usize, StoreError> {
    let mut fired = 0;
    for schedule in store.due_schedules(me).await? {
        if fire(store, me, incarnation, &schedule).await? {
            fired += 1;
        }
    }
    Ok(fired)
}

async fn fire(
    store: &dyn Store,
    me: &str,
    incarnation: i64,
    schedule: &ScheduleRow,
) -> Result<bool, StoreError> {
    let cron = match Cron::parse(&schedule.cron, &schedule.tz) {
        Ok(cron) => cron,
        Err(e) => {
            tracing::warn!(schedule = %schedule.name, error = %e, "schedule does not parse; not firing");
            return Ok(false);
        }
    };
    let now = store.now_ms().await?;
    let tick = schedule.next_fire_at;
    let next = cron.next_after(now.max(tick)).unwrap_or(i64::MAX);
    let Some(version) = store.active_version(&schedule.flow).await? else {
        tracing::warn!(schedule = %schedule.name, flow = %schedule.flow, "the scheduled flow is not deployed; tick skipped");
        return store
            .fire_schedule_without_request(&schedule.name, tick, next)
            .await;
    };
    let request = NewRequest::of_version(
        &version,
        format!("{}-{tick}", schedule.name),
        (me, incarnation),
        store.put_payload(schedule.input.clone().into_bytes())?,
    );
    let fired = store
        .fire_schedule(&schedule.name, tick, next, &request)
        .await?;
    if fired {
        tracing::info!(schedule = %schedule.name, request = %request.id, "schedule fired");
    }
    Ok(fired)
}

/// Looks for due schedules four times a second.
pub async fn run(store: Arc<dyn Store>, cluster: Arc<Cluster>, executor: Arc<Executor>) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match fire_due(&*store, &cluster.id, cluster.incarnation()).await {
            Ok(0) => {}
            Ok(_) => executor.wake(),
            Err(e) => tracing::warn!(error = %e, "firing schedules failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_000_000_000; // 2026-11-18 11:06:40 UTC, a Wednesday

    fn utc(expr: &str) -> Cron {
        Cron::parse(expr, "UTC").unwrap()
    }

    /// Milliseconds of an RFC 3339 instant.
    fn at(instant: &str) -> i64 {
        instant.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn every_second_and_every_minute() {
        let every_second = utc("* * * * * *");
        assert_eq!(every_second.next_after(T), Some(T + 1000));
        assert_eq!(every_second.next_after(T + 1), Some(T + 1000));
        let every_minute = utc("* * * * *");
        assert_eq!(every_minute.next_after(T), Some(T + 20_000));
    }

    #[test]
    fn steps_ranges_and_weekdays() {
        let every_five = utc("*/5 * * * * *");
        assert_eq!(every_five.next_after(T), Some(T + 5000));
        let nine_on_weekdays = utc("0 9 * * 1-5");
        assert_eq!(
            nine_on_weekdays.next_after(T),
            Some(at("2026-11-19T09:00:00Z"))
        );
        let sundays = utc("0 0 0 * * 7");
        assert_eq!(sundays.next_after(T), Some(at("2026-11-22T00:00:00Z")));
    }

    #[test]
    fn a_zone_moves_the_tick_with_its_offset() {
        let nine_in_berlin = Cron::parse("0 9 * * *", "Europe/Berlin").unwrap();
        // Winter (CET, +01:00) and summer (CEST, +02:00).
        assert_eq!(
            nine_in_berlin.next_after(T),
            Some(at("2026-11-19T08:00:00Z"))
        );
        assert_eq!(
            nine_in_berlin.next_after(at("2026-07-01T12:00:00Z")),
            Some(at("2026-07-02T07:00:00Z"))
        );
    }

    #[test]
    fn a_skipped_hour_fires_right_after_the_gap_and_a_repeated_hour_once() {
        // Berlin skips 02:00-03:00 on 2026-03-29 and repeats 02:00-03:00
        // on 2026-10-25.
        let half_past_two = Cron::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let ticks = |from: &str| {
            let mut ticks = Vec::new();
            let mut now = at(from);
            for _ in 0..3 {
                now = half_past_two.next_after(now).unwrap();
                ticks.push(now);
            }
            ticks
        };
        assert_eq!(
            ticks("2026-03-27T12:00:00Z"),
            [
                at("2026-03-28T01:30:00Z"), // 02:30 CET
                at("2026-03-29T01:00:00Z"), // 03:00 CEST, the first time after the gap
                at("2026-03-30T00:30:00Z"), // 02:30 CEST
            ]
        );
        assert_eq!(
            ticks("2026-10-23T12:00:00Z"),
            [
                at("2026-10-24T00:30:00Z"), // 02:30 CEST
                at("2026-10-25T00:30:00Z"), // 02:30 CEST, the first pass only
                at("2026-10-26T01:30:00Z"), // 02:30 CET
            ]
        );
        // An hourly schedule fires in both passes of the repeated hour.
        let hourly = Cron::parse("0 0 * * * *", "Europe/Berlin").unwrap();
        let first = hourly.next_after(at("2026-10-24T23:30:00Z")).unwrap();
        let second = hourly.next_after(first).unwrap();
        let third = hourly.next_after(second).unwrap();
        assert_eq!(
            [first, second, third],
            [
                at("2026-10-25T00:00:00Z"), // 02:00 CEST
                at("2026-10-25T01:00:00Z"), // 02:00 CET
                at("2026-10-25T02:00:00Z"), // 03:00 CET
            ]
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_why() {
        assert!(matches!(
            Cron::parse("* * *", "UTC"),
            Err(CronError::Expression { .. })
        ));
        let out_of_range = Cron::parse("61 * * * * *", "UTC").unwrap_err().to_string();
        assert!(out_of_range.contains("61 * * * * *"), "{out_of_range}");
        assert!(Cron::parse("*/0 * * * *", "UTC").is_err());
        let zone = Cron::parse("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(
            zone.contains("unknown time zone \"Mars/Olympus\""),
            "{zone}"
        );
    }
}
