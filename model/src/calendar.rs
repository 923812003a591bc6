//! Days as India counts them: Indian Standard Time (UTC+05:30 all year, no daylight saving).
//! Warehouse cut-offs, working days, holidays and delivery promises are all counted in it, so
//! a promise made at 23:50 IST is for the next day's dispatch whatever the server's zone.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IST is UTC+05:30.
pub const IST_OFFSET_MS: i64 = (5 * 60 + 30) * MINUTE_MS;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// A calendar day in IST, held as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IstDate(i32);

impl IstDate {
    /// The day, or `None` when the month or day does not exist (30 February).
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self(days_from_civil(year, month, day)))
    }

    /// The IST day an instant (UTC milliseconds) falls on.
    pub fn of_instant(utc_ms: i64) -> Self {
        Self((utc_ms + IST_OFFSET_MS).div_euclid(DAY_MS) as i32)
    }

    /// Midnight IST at the start of this day, in UTC milliseconds.
    pub fn start_utc_ms(self) -> i64 {
        i64::from(self.0) * DAY_MS - IST_OFFSET_MS
    }

    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        Weekday::ALL[(self.0 + 3).rem_euclid(7) as usize]
    }

    pub fn plus_days(self, days: i32) -> Self {
        Self(self.0 + days)
    }

    /// Whole days from `earlier` to `self` (negative when `earlier` is later).
    pub fn days_since(self, earlier: IstDate) -> i32 {
        self.0 - earlier.0
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a date as YYYY-MM-DD");
        let mut parts = text.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        let day = d.parse().map_err(|_| bad())?;
        Self::from_ymd(year, month, day).ok_or_else(|| format!("{text:?} is not a calendar date"))
    }
}

/// Minutes past midnight IST of an instant (UTC milliseconds): what a cut-off compares with.
pub fn ist_minute_of_day(utc_ms: i64) -> u32 {
    ((utc_ms + IST_OFFSET_MS).rem_euclid(DAY_MS) / MINUTE_MS) as u32
}

impl fmt::Display for IstDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl Serialize for IstDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IstDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        IstDate::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Monday to Saturday: the common Indian working week.
    pub const MON_TO_SAT: [Weekday; 6] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The days of the week someone works, and the dates they do not (holidays). Counting working
/// days forward is all a promise needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkCalendar {
    weekdays: u8,
    holidays: BTreeSet<IstDate>,
}

impl WorkCalendar {
    /// Working on `weekdays`, except on `holidays`. `None` when no weekday is working: such a
    /// calendar would never reach a working day.
    pub fn new(weekdays: &[Weekday], holidays: impl IntoIterator<Item = IstDate>) -> Option<Self> {
        let weekdays = weekdays.iter().fold(0, |bits, day| bits | day.bit());
        (weekdays != 0).then(|| Self {
            weekdays,
            holidays: holidays.into_iter().collect(),
        })
    }

    /// Monday to Saturday, no holidays: the common Indian courier week.
    pub fn monday_to_saturday() -> Self {
        Self {
            weekdays: 0b011_1111,
            holidays: BTreeSet::new(),
        }
    }

    pub fn with_holidays(mut self, holidays: impl IntoIterator<Item = IstDate>) -> Self {
        self.holidays.extend(holidays);
        self
    }

    pub fn works_on(&self, date: IstDate) -> bool {
        self.weekdays & date.weekday().bit() != 0 && !self.holidays.contains(&date)
    }

    /// `date` itself when it is a working day, else the next one.
    pub fn on_or_after(&self, mut date: IstDate) -> IstDate {
        // At least one weekday works, so within 7 + holidays days one is found.
        while !self.works_on(date) {
            date = date.plus_days(1);
        }
        date
    }

    /// The working day `count` working days after `date` (`date` itself need not be one; with
    /// `count` 0 it is the first working day on or after `date`).
    pub fn add_working_days(&self, date: IstDate, count: u32) -> IstDate {
        let mut day = self.on_or_after(date);
        for _ in 0..count {
            day = self.on_or_after(day.plus_days(1));
        }
        day
    }

    /// The day `count` working days after `from` (`from` itself for 0): when a parcel that
    /// left on `from` and travelled `count` working days arrives. The inverse of
    /// [`WorkCalendar::working_days_between`] on working days.
    pub fn after_working_days(&self, from: IstDate, count: u32) -> IstDate {
        match count {
            0 => from,
            n => self.add_working_days(from.plus_days(1), n - 1),
        }
    }

    /// Working days strictly after `from` up to and including `to`: how many working days a
    /// parcel that left on `from` and arrived on `to` spent (0 when it arrived the same day).
    pub fn working_days_between(&self, from: IstDate, to: IstDate) -> u32 {
        let mut count = 0;
        let mut day = from;
        while day < to {
            day = day.plus_days(1);
            if self.works_on(day) {
                count += 1;
            }
        }
        count
    }

    pub fn weekdays(&self) -> impl Iterator<Item = Weekday> + '_ {
        Weekday::ALL
            .into_iter()
            .filter(|day| self.weekdays & day.bit() != 0)
    }

    pub fn holidays(&self) -> impl Iterator<Item = IstDate> + '_ {
        self.holidays.iter().copied()
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard Hinnant's
// "chrono-compatible low-level date algorithms", public domain).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march as i32 + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> IstDate {
        IstDate::parse(text).unwrap()
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for days in -146_097..146_097 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(IstDate::from_ymd(year, month, day), Some(IstDate(days)));
        }
    }

    #[test]
    fn a_known_day_has_its_weekday_and_text() {
        let republic_day = date("2026-01-26");
        assert_eq!(republic_day.weekday(), Weekday::Mon);
        assert_eq!(republic_day.to_string(), "2026-01-26");
        assert_eq!(date("2024-02-29").plus_days(1).to_string(), "2024-03-01");
        assert!(IstDate::parse("2026-02-29").is_err());
        assert!(IstDate::parse("2026-2-28").is_err());
        assert!(IstDate::parse("26-02-2026").is_err());
    }

    #[test]
    fn the_ist_day_turns_at_1830_utc() {
        // 2026-12-02T18:29:59Z is 23:59:59 IST on the 2nd; a second later it is the 3rd.
        let before = 1_796_236_199_000;
        assert_eq!(IstDate::of_instant(before).to_string(), "2026-12-02");
        assert_eq!(IstDate::of_instant(before + 1000).to_string(), "2026-12-03");
        assert_eq!(ist_minute_of_day(before), 23 * 60 + 59);
        assert_eq!(ist_minute_of_day(before + 1000), 0);
        assert_eq!(date("2026-12-03").start_utc_ms(), before + 1000);
    }

    #[test]
    fn working_days_skip_sundays_and_holidays() {
        let week = WorkCalendar::monday_to_saturday().with_holidays([date("2026-12-07")]);
        // Saturday 5 December + 1 working day: Sunday and the Monday holiday are skipped.
        assert_eq!(
            week.add_working_days(date("2026-12-05"), 1),
            date("2026-12-08")
        );
        assert_eq!(
            week.add_working_days(date("2026-12-06"), 0),
            date("2026-12-08")
        );
        assert_eq!(
            week.working_days_between(date("2026-12-05"), date("2026-12-08")),
            1
        );
        assert_eq!(
            week.working_days_between(date("2026-12-05"), date("2026-12-05")),
            0
        );
        assert_eq!(
            week.after_working_days(date("2026-12-05"), 0),
            date("2026-12-05")
        );
        assert_eq!(
            week.after_working_days(date("2026-12-05"), 2),
            date("2026-12-09")
        );
        for count in 0..20 {
            let from = date("2026-12-04");
            let to = week.after_working_days(from, count);
            assert_eq!(week.working_days_between(from, to), count);
        }
        assert!(WorkCalendar::new(&[], []).is_none());
    }
}
