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

/// A parse error in a cron expression.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct CronError {
    expr: String,
    reason: String,
}

/// A cron expression: `sec min hour day-of-month month day-of-week`, or the
/// classic five fields (seconds = 0). Fields take `*`, `N`, `A-B`, `*/S`,
/// `A-B/S` and comma lists; day-of-week 0 or 7 is Sunday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

fn field(text: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .map_err(|_| format!("bad step {step:?}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err("a step of 0".into());
        }
        let (low, high) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(range)?, max),
                None => (number(range)?, number(range)?),
            },
        };
        if low < min || high > max || low > high {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        for value in (low..=high).step_by(step as usize) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

fn number(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number"))
}

impl Cron {
    /// Parses an expression.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let error = |reason: String| CronError {
            expr: expr.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let fields = match fields.len() {
            6 => fields,
            5 => [&["0"][..], &fields].concat(),
            n => return Err(error(format!("{n} fields; expected 5 or 6"))),
        };
        let mut weekdays = field(fields[5], 0, 7).map_err(error)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            seconds: field(fields[0], 0, 59).map_err(error)?,
            minutes: field(fields[1], 0, 59).map_err(error)?,
            hours: field(fields[2], 0, 23).map_err(error)?,
            days: field(fields[3], 1, 31).map_err(error)?,
            months: field(fields[4], 1, 12).map_err(error)?,
            weekdays,
            any_day: fields[3] == "*",
            any_weekday: fields[5] == "*",
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => by_day,
            (true, false) => by_weekday,
            // Classic cron: when both are restricted, either may match.
            (false, false) => by_day || by_weekday,
        }
    }

    /// The first tick strictly after `after_ms` (UTC), within five years.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = after_ms.div_euclid(1000) + 1;
        let first_minute = start.div_euclid(60);
        let mut first_second = start.rem_euclid(60);
        for minute in first_minute..first_minute + 5 * 366 * 24 * 60 {
            let days = minute.div_euclid(24 * 60);
            let (_, month, day) = civil(days);
            let weekday = (days + 4).rem_euclid(7) as u32;
            let hour = (minute.rem_euclid(24 * 60) / 60) as u32;
            let min = minute.rem_euclid(60) as u32;
            if self.months & (1 << month) != 0
                && self.day_matches(day, weekday)
                && self.hours & (1 << hour) != 0
                && self.minutes & (1 << min) != 0
                && let Some(second) = (first_second..60).find(|s| self.seconds & (1 << s) != 0)
            {
                return Some((minute * 60 + second) * 1000);
            }
            first_second = 0;
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
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
    let Ok(cron) = Cron::parse(&schedule.cron) else {
        tracing::warn!(schedule = %schedule.name, "unparsable cron expression; not firing");
        return Ok(false);
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

    #[test]
    fn every_second_and_every_minute() {
        let every_second = Cron::parse("* * * * * *").unwrap();
        assert_eq!(every_second.next_after(T), Some(T + 1000));
        assert_eq!(every_second.next_after(T + 1), Some(T + 1000));
        let every_minute = Cron::parse("* * * * *").unwrap();
        assert_eq!(every_minute.next_after(T), Some(T + 20_000));
    }

    #[test]
    fn steps_ranges_and_weekdays() {
        let every_five = Cron::parse("*/5 * * * * *").unwrap();
        assert_eq!(every_five.next_after(T), Some(T + 5000));
        let nine_on_weekdays = Cron::parse("0 9 * * 1-5").unwrap();
        // Thursday 2026-11-19 09:00:00 UTC.
        assert_eq!(nine_on_weekdays.next_after(T), Some(1_795_078_800_000));
        let sundays = Cron::parse("0 0 0 * * 7").unwrap();
        assert_eq!(sundays.next_after(T), Some(1_795_305_600_000));
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(
            Cron::parse("* * *")
                .unwrap_err()
                .to_string()
                .contains("3 fields")
        );
        assert!(
            Cron::parse("61 * * * * *")
                .unwrap_err()
                .to_string()
                .contains("outside 0-59")
        );
        assert!(Cron::parse("*/0 * * * *").is_err());
    }
}
