//! Cron schedules: classic 5-field expressions (UTC), their translation to the `cron` crate, next
//! firings and the shortest gap between firings (shared by the config check and the Scheduler).
//!
//! Why a translator: the `cron` crate reads 6 or 7 fields (seconds first, year optional), numbers
//! day-of-week 1–7 from Sunday where classic cron numbers 0–6 (or 7) from Sunday, and always ANDs
//! day-of-month with day-of-week. Handing it the runbook's `0 */6 * * *` or `0 9 * * 1` as-is would
//! be rejected or silently fire on the wrong day (classic `1` = Monday would run on Sunday).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};

/// How far ahead [`CronSchedule::shortest_interval`] looks: a year plus a day, so a leap year's
/// extra day and the turn of the year are both seen once.
const HORIZON_DAYS: i64 = 366;

/// The smallest gap a 5-field expression can have (its seconds are always 0).
const ONE_MINUTE: i64 = 60;

/// Why a cron expression was refused. Messages quote the expression: cron text is never secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "has {0} fields, expected 5 (minute hour day-of-month month day-of-week): only classic \
         5-field cron is accepted, without a seconds or year field"
    )]
    FieldCount(usize),
    #[error("`{given}` shortcuts are not accepted; write the 5-field form `{equivalent}`")]
    Shortcut {
        given: String,
        equivalent: &'static str,
    },
    #[error("`?` is not classic cron; use `*` in field `{0}`")]
    QuestionMark(String),
    #[error("day-of-week `{field}`: {reason}")]
    DayOfWeek { field: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("never fires (no date matches, e.g. 30 or 31 February)")]
    NeverFires,
}

/// A classic 5-field cron expression evaluated in UTC.
///
/// When both day-of-month and day-of-week are restricted (neither starts with `*`), classic cron
/// fires when *either* matches (`0 0 13 * 5` = every 13th and every Friday). The `cron` crate
/// requires both, so that case is kept as two crate schedules whose firings are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    source: String,
    schedules: Vec<cron::Schedule>,
}

impl CronSchedule {
    /// Parses a classic 5-field expression: `minute hour day-of-month month day-of-week`.
    /// Day-of-week takes 0–7 (0 and 7 are Sunday) or names (`MON`, `mon-fri`).
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let crate_forms = translate(expression)?;
        let mut schedules = Vec::with_capacity(crate_forms.len());
        for form in &crate_forms {
            let schedule = cron::Schedule::from_str(form)
                .map_err(|err| ScheduleError::Invalid(err.to_string()))?;
            schedules.push(schedule);
        }
        let parsed = Self {
            source: expression.split_whitespace().collect::<Vec<_>>().join(" "),
            schedules,
        };
        // A date that never exists (`0 0 31 2 *`) is accepted by cron but would leave a strategy
        // silently idle; the crate's calendar ends in 2100, so look from a fixed past date.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if reference.and_then(|t| parsed.next_after(t)).is_none() {
            return Err(ScheduleError::NeverFires);
        }
        Ok(parsed)
    }

    /// The expression as given (whitespace normalised to single spaces).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression(s) handed to the `cron` crate, for logs and tests.
    pub fn crate_expressions(&self) -> Vec<&str> {
        self.schedules.iter().map(cron::Schedule::source).collect()
    }

    /// The first firing strictly after `t`, or `None` past the crate's calendar (year 2100).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|schedule| schedule.after(&t).next())
            .min()
    }

    /// The shortest gap between consecutive firings, over the pairs whose first firing falls within
    /// a year (366 days) after `from`; at least the first pair is always looked at, so a schedule
    /// that fires once a year or less still has an interval. `None` if it fires fewer than twice.
    pub fn shortest_interval(&self, from: DateTime<Utc>) -> Option<Duration> {
        let mut shortest: Option<Duration> = None;
        for (earlier, later) in self.consecutive_pairs(from) {
            let gap = later - earlier;
            if shortest.is_none_or(|s| gap < s) {
                shortest = Some(gap);
            }
            // Nothing can be shorter than a minute: stop scanning (`* * * * *` would otherwise
            // walk half a million firings).
            if gap <= Duration::seconds(ONE_MINUTE) {
                break;
            }
        }
        shortest
    }

    /// The first pair of consecutive firings (within the same horizon as
    /// [`shortest_interval`](Self::shortest_interval)) closer together than `minimum`. Stops at
    /// the first offender, so rejecting `*/5 * * * *` costs one step.
    pub fn first_gap_shorter_than(
        &self,
        from: DateTime<Utc>,
        minimum: Duration,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.consecutive_pairs(from)
            .find(|(earlier, later)| *later - *earlier < minimum)
    }

    fn consecutive_pairs(
        &self,
        from: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let horizon = from + Duration::days(HORIZON_DAYS);
        let mut previous = self.next_after(from);
        let mut first = true;
        std::iter::from_fn(move || {
            let earlier = previous?;
            if !first && earlier > horizon {
                return None;
            }
            first = false;
            let later = self.next_after(earlier)?;
            previous = Some(later);
            Some((earlier, later))
        })
    }
}

impl FromStr for CronSchedule {
    type Err = ScheduleError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        Self::parse(expression)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Translates a classic 5-field expression into one or two 6-field `cron` crate expressions
/// (two when classic cron's day-of-month OR day-of-week rule applies).
pub fn translate(expression: &str) -> Result<Vec<String>, ScheduleError> {
    let trimmed = expression.trim();
    if let Some(equivalent) = shortcut_equivalent(trimmed) {
        return Err(ScheduleError::Shortcut {
            given: trimmed.to_owned(),
            equivalent,
        });
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
        return Err(ScheduleError::FieldCount(fields.len()));
    };
    // The crate reads `?` as `*` in the day fields; classic cron has no `?` at all.
    if let Some(field) = fields.iter().find(|field| field.contains('?')) {
        return Err(ScheduleError::QuestionMark((*field).to_owned()));
    }
    // Vixie cron: a day field "is restricted" unless it starts with `*` (so `*/2` counts as `*`).
    // Decided on the classic text, before `*/2` is expanded into a list.
    let dom_restricted = !day_of_month.starts_with('*');
    let dow_restricted = !day_of_week.starts_with('*');
    let day_of_week = translate_day_of_week(day_of_week)?;
    if dom_restricted && dow_restricted {
        Ok(vec![
            format!("0 {minute} {hour} {day_of_month} {month} *"),
            format!("0 {minute} {hour} * {month} {day_of_week}"),
        ])
    } else {
        Ok(vec![format!(
            "0 {minute} {hour} {day_of_month} {month} {day_of_week}"
        )])
    }
}

fn shortcut_equivalent(expression: &str) -> Option<&'static str> {
    let equivalent = match expression.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ if expression.starts_with('@') => "minute hour day-of-month month day-of-week",
        _ => return None,
    };
    Some(equivalent)
}

/// Rewrites a classic day-of-week field for the crate: numeric items (points, ranges, steps) are
/// expanded to explicit crate ordinals (classic d → d mod 7 + 1); names and a bare `*` pass
/// through, since the crate reads names the same way classic cron does.
fn translate_day_of_week(field: &str) -> Result<String, ScheduleError> {
    if field == "*" {
        return Ok(field.to_owned());
    }
    let error = |reason: &str| ScheduleError::DayOfWeek {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    let mut days = BTreeSet::new();
    let mut named = Vec::new();
    for item in field.split(',') {
        if item.is_empty() {
            return Err(error("empty list item"));
        }
        if !item.bytes().any(|b| b.is_ascii_digit()) {
            named.push(item);
            continue;
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = match step {
            Some(step) => match step.parse::<u32>() {
                Ok(step @ 1..=7) => step,
                _ => return Err(error("a step must be a number from 1 to 7")),
            },
            None => 1,
        };
        let day = |text: &str| match text.parse::<u32>() {
            Ok(day @ 0..=7) => Ok(day),
            _ if text.bytes().any(|b| b.is_ascii_alphabetic()) => Err(error(
                "do not mix day names and numbers in one item (write MON-FRI or 1-5)",
            )),
            _ => Err(error(
                "days are 0-7 (0 and 7 are Sunday) or names such as MON",
            )),
        };
        let (first, last) = match base.split_once('-') {
            _ if base == "*" => (0, 7),
            Some((first, last)) => (day(first)?, day(last)?),
            // `N/step` (a cronie extension) runs from N to the end of the week.
            None if step > 1 || item.contains('/') => (day(base)?, 7),
            None => {
                let single = day(base)?;
                (single, single)
            }
        };
        if first > last {
            return Err(error("a range must go from a lower to a higher day"));
        }
        days.extend((first..=last).step_by(step as usize).map(|d| d % 7 + 1));
    }
    let mut items: Vec<String> = days.iter().map(u32::to_string).collect();
    items.extend(named.into_iter().map(str::to_owned));
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    /// The weekdays of the firings in the week starting Monday 2025-01-06.
    fn weekdays(expression: &str) -> Vec<Weekday> {
        let schedule = CronSchedule::parse(expression).unwrap();
        let start = at(2025, 1, 5, 23, 59); // Sunday evening, before the week starts
        let mut t = start;
        let mut out = Vec::new();
        while let Some(next) = schedule.next_after(t) {
            if next >= start + Duration::days(7) {
                break;
            }
            out.push(next.weekday());
            t = next;
        }
        out
    }

    #[test]
    fn five_fields_get_a_seconds_field_and_steps_are_kept() {
        assert_eq!(translate("0 */6 * * *").unwrap(), vec!["0 0 */6 * * *"]);
        assert_eq!(
            translate("  */15   1-5  * JAN  * ").unwrap(),
            vec!["0 */15 1-5 * JAN *"]
        );
        let schedule = CronSchedule::parse("0 */6 * * *").unwrap();
        assert_eq!(schedule.source(), "0 */6 * * *");
        assert_eq!(schedule.to_string(), "0 */6 * * *");
        let fires: Vec<u32> = [0, 6, 12, 18]
            .iter()
            .map(|h| {
                schedule
                    .next_after(at(2025, 3, 1, *h, 0) - Duration::minutes(1))
                    .unwrap()
                    .hour()
            })
            .collect();
        assert_eq!(fires, vec![0, 6, 12, 18]);
        assert_eq!(
            schedule.next_after(at(2025, 3, 1, 0, 0)),
            Some(at(2025, 3, 1, 6, 0))
        );
    }

    #[test]
    fn numeric_days_of_week_are_shifted_to_the_crate_numbering() {
        assert_eq!(translate("0 9 * * 1").unwrap(), vec!["0 0 9 * * 2"]);
        assert_eq!(translate("0 9 * * 0").unwrap(), vec!["0 0 9 * * 1"]);
        assert_eq!(translate("0 9 * * 7").unwrap(), vec!["0 0 9 * * 1"]);
        assert_eq!(
            translate("0 9 * * 1-5").unwrap(),
            vec!["0 0 9 * * 2,3,4,5,6"]
        );
        assert_eq!(translate("0 9 * * 5-7").unwrap(), vec!["0 0 9 * * 1,6,7"]);
        assert_eq!(translate("0 9 * * 0,3").unwrap(), vec!["0 0 9 * * 1,4"]);
        assert_eq!(translate("0 9 * * */2").unwrap(), vec!["0 0 9 * * 1,3,5,7"]);
        assert_eq!(translate("0 9 * * MON").unwrap(), vec!["0 0 9 * * MON"]);
        assert_eq!(
            translate("0 9 * * mon-fri,0").unwrap(),
            vec!["0 0 9 * * 1,mon-fri"]
        );
    }

    #[test]
    fn classic_day_numbers_fire_on_the_classic_day() {
        assert_eq!(weekdays("0 9 * * 1"), vec![Weekday::Mon]);
        assert_eq!(weekdays("0 9 * * 0"), vec![Weekday::Sun]);
        assert_eq!(weekdays("0 9 * * 7"), vec![Weekday::Sun]);
        assert_eq!(weekdays("0 9 * * 6"), vec![Weekday::Sat]);
        assert_eq!(weekdays("0 9 * * MON"), vec![Weekday::Mon]);
        assert_eq!(weekdays("0 9 * * sun"), vec![Weekday::Sun]);
        assert_eq!(
            weekdays("0 9 * * 1-5"),
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
        assert_eq!(weekdays("0 9 * * MON-FRI"), weekdays("0 9 * * 1-5"));
        assert_eq!(
            weekdays("0 9 * * 5-7"),
            vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]
        );
        assert_eq!(
            weekdays("0 9 * * */2"),
            vec![Weekday::Tue, Weekday::Thu, Weekday::Sat, Weekday::Sun]
        );
        assert_eq!(weekdays("0 9 * * 0-6").len(), 7);
    }

    #[test]
    fn restricted_day_of_month_and_week_fire_on_either_like_classic_cron() {
        let schedule = CronSchedule::parse("0 0 13 * 5").unwrap();
        assert_eq!(schedule.crate_expressions().len(), 2);
        // From Wednesday 2025-06-11: Friday the 13th (both), then Friday the 20th, then the next
        // 13th would be a Sunday in July, after Fridays 27 June and 4, 11 July.
        let mut t = at(2025, 6, 11, 0, 0);
        let mut days = Vec::new();
        for _ in 0..6 {
            t = schedule.next_after(t).unwrap();
            days.push((t.month(), t.day()));
        }
        assert_eq!(
            days,
            vec![(6, 13), (6, 20), (6, 27), (7, 4), (7, 11), (7, 13)]
        );
        // A `*`-led day-of-month keeps the AND rule, as in Vixie cron.
        assert_eq!(
            CronSchedule::parse("0 0 */2 * 1")
                .unwrap()
                .crate_expressions()
                .len(),
            1
        );
        assert_eq!(
            translate("0 0 13 * */2").unwrap(),
            vec!["0 0 0 13 * 1,3,5,7"]
        );
    }

    #[test]
    fn only_classic_five_field_expressions_are_accepted() {
        for bad in ["0 0 */6 * * *", "0 0 */6 * * * 2030", "* * * *", "", "   "] {
            assert!(
                matches!(CronSchedule::parse(bad), Err(ScheduleError::FieldCount(_))),
                "{bad:?}"
            );
        }
        let err = CronSchedule::parse("@daily").unwrap_err();
        assert!(err.to_string().contains("0 0 * * *"), "{err}");
        assert!(matches!(
            CronSchedule::parse("@reboot"),
            Err(ScheduleError::Shortcut { .. })
        ));
        assert!(matches!(
            CronSchedule::parse("0 0 ? * MON"),
            Err(ScheduleError::QuestionMark(_))
        ));
        for bad in [
            "0 0 * * 8",
            "0 0 * * 1-9",
            "0 0 * * 5-1",
            "0 0 * * MON-3",
            "0 0 * * 1/0",
        ] {
            assert!(
                matches!(
                    CronSchedule::parse(bad),
                    Err(ScheduleError::DayOfWeek { .. })
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "60 * * * *",
            "0 24 * * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "x * * * *",
            "0 0 * * FUNDAY",
        ] {
            assert!(
                matches!(CronSchedule::parse(bad), Err(ScheduleError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            CronSchedule::parse("0 0 31 2 *"),
            Err(ScheduleError::NeverFires)
        );
        assert!(CronSchedule::parse("0 0 29 2 *").is_ok());
        assert!("59 23 31 12 *".parse::<CronSchedule>().is_ok());
    }

    #[test]
    fn shortest_interval_finds_the_smallest_gap() {
        let from = at(2025, 1, 1, 0, 0);
        let interval = |e: &str| CronSchedule::parse(e).unwrap().shortest_interval(from);
        assert_eq!(interval("*/30 * * * *"), Some(Duration::minutes(30)));
        assert_eq!(interval("0 * * * *"), Some(Duration::hours(1)));
        assert_eq!(interval("0 */6 * * *"), Some(Duration::hours(6)));
        assert_eq!(interval("* * * * *"), Some(Duration::minutes(1)));
        // Uneven lists: the smallest gap, not the first one.
        assert_eq!(interval("0 0,1,12 * * *"), Some(Duration::hours(1)));
        assert_eq!(interval("0 22 * * *"), Some(Duration::days(1)));
        // 23:00 Friday then 01:00 Saturday: two hours across midnight.
        assert_eq!(interval("0 1,23 * * 5,6"), Some(Duration::hours(2)));
        // Once a year still has one interval (to the next year).
        assert_eq!(interval("0 0 1 1 *"), Some(Duration::days(365)));
    }

    #[test]
    fn first_gap_shorter_than_stops_at_the_first_offender() {
        let from = at(2025, 1, 1, 0, 0);
        let schedule = CronSchedule::parse("*/30 * * * *").unwrap();
        assert_eq!(
            schedule.first_gap_shorter_than(from, Duration::hours(1)),
            Some((at(2025, 1, 1, 0, 30), at(2025, 1, 1, 1, 0)))
        );
        let hourly = CronSchedule::parse("0 * * * *").unwrap();
        assert_eq!(
            hourly.first_gap_shorter_than(from, Duration::hours(1)),
            None
        );
        let six = CronSchedule::parse("0 */6 * * *").unwrap();
        assert_eq!(six.first_gap_shorter_than(from, Duration::hours(6)), None);
        assert!(
            six.first_gap_shorter_than(from, Duration::hours(7))
                .is_some()
        );
        // A short gap that only shows up late in the year is still found.
        let late = CronSchedule::parse("0 0,1 24 12 *").unwrap();
        assert_eq!(
            late.first_gap_shorter_than(from, Duration::hours(2)),
            Some((at(2025, 12, 24, 0, 0), at(2025, 12, 24, 1, 0)))
        );
    }
}
