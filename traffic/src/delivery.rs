//! The generator's truth about deliveries: how long a warehouse takes to hand a parcel over
//! and how long a courier takes to carry it, per lane. Seeded draws from distributions that
//! are written down here exactly, so a test can compare what the serviceability job learnt
//! with the truth, and a backtest can score promises against it.
//!
//! Transit, in the courier's working days at the destination, is a base that depends on the
//! lane plus a delay drawn from [`DELAY_SHARES`] (a long tail: most parcels are on time, a few
//! are days late). The base:
//! - grows with the great-circle distance (`model::geo`): 1 day within 50 km, up to 6 beyond
//!   2,000 km;
//! - is shorter between two metros (Delhi, Mumbai, Bengaluru, Chennai, Kolkata, Hyderabad,
//!   Pune, Ahmedabad: daily direct line-hauls);
//! - is longer to or from the north-east, Jammu and Kashmir and Ladakh (+2) and the Andaman
//!   and Nicobar and Lakshadweep islands (+4);
//! - depends on the courier's speed class: express ×0.7, standard ×1, economy ×1.4.
//!
//! Handling is the warehouse's declared days plus a delay drawn from [`HANDLING_DELAY_SHARES`].
//! Nobody dispatches or delivers on Sundays or on [`NATIONAL_HOLIDAYS`].

use model::calendar::{IstDate, WorkCalendar, ist_minute_of_day};
use model::geo::{Place, distance_km};
use model::payload::CourierSpeed;
use rand::Rng;

/// Metro pincode prefixes (the first three digits).
pub const METRO_PREFIXES: &[u32] = &[110, 400, 560, 600, 700, 500, 411, 380];

/// The probability of arriving 0, 1, 2... working days after the lane's base.
pub const DELAY_SHARES: [f64; 7] = [0.60, 0.22, 0.09, 0.04, 0.025, 0.015, 0.01];

/// The probability of shipping 0, 1, 2 working days after the declared handling days.
pub const HANDLING_DELAY_SHARES: [f64; 3] = [0.80, 0.15, 0.05];

/// Gazetted national holidays, and Diwali, in the generator's years (IST dates).
pub const NATIONAL_HOLIDAYS: &[&str] = &[
    "2025-01-26",
    "2025-08-15",
    "2025-10-02",
    "2025-10-20",
    "2026-01-26",
    "2026-08-15",
    "2026-10-02",
    "2026-11-08",
    "2027-01-26",
    "2027-08-15",
    "2027-10-02",
    "2027-10-29",
];

/// Monday to Saturday less the national holidays: every party's calendar in the generator.
pub fn calendar() -> WorkCalendar {
    WorkCalendar::monday_to_saturday().with_holidays(national_holidays())
}

pub fn national_holidays() -> Vec<IstDate> {
    NATIONAL_HOLIDAYS
        .iter()
        .filter_map(|date| IstDate::parse(date).ok())
        .collect()
}

/// The speed class of the generator's `index`th courier: a mix of the three.
pub fn courier_speed(index: usize) -> CourierSpeed {
    match index % 3 {
        0 => CourierSpeed::Standard,
        1 => CourierSpeed::Express,
        _ => CourierSpeed::Economy,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    Metro,
    Regular,
    Remote,
    Island,
}

fn zone(place: &Place) -> Zone {
    match place.state.as_str() {
        "Andaman And Nicobar Islands" | "Lakshadweep" => Zone::Island,
        "Assam" | "Meghalaya" | "Manipur" | "Mizoram" | "Nagaland" | "Tripura"
        | "Arunachal Pradesh" | "Sikkim" | "Jammu And Kashmir" | "Ladakh" => Zone::Remote,
        _ if METRO_PREFIXES.contains(&(place.pincode.number() / 1000)) => Zone::Metro,
        _ => Zone::Regular,
    }
}

/// The lane's base transit, in whole working days (at least 1).
pub fn base_transit_days(origin: &Place, destination: &Place, speed: CourierSpeed) -> u32 {
    let km = distance_km(origin.coordinates(), destination.coordinates());
    let mut days: f64 = match km {
        km if km < 50.0 => 1.0,
        km if km < 200.0 => 1.5,
        km if km < 500.0 => 2.5,
        km if km < 1000.0 => 3.5,
        km if km < 2000.0 => 4.5,
        _ => 6.0,
    };
    let zones = [zone(origin), zone(destination)];
    if zones == [Zone::Metro, Zone::Metro] {
        days *= 0.7;
    }
    if zones.contains(&Zone::Island) {
        days += 4.0;
    } else if zones.contains(&Zone::Remote) {
        days += 2.0;
    }
    days *= match speed {
        CourierSpeed::Express => 0.7,
        CourierSpeed::Standard => 1.0,
        CourierSpeed::Economy => 1.4,
    };
    (days.round() as u32).max(1)
}

/// The exact chance that transit on a lane of `base` days takes `days` or fewer.
pub fn transit_at_most(base: u32, days: u32) -> f64 {
    shares_at_most(&DELAY_SHARES, days.checked_sub(base))
}

/// The exact chance that handling declared as `declared` days takes `days` or fewer.
pub fn handling_at_most(declared: u32, days: u32) -> f64 {
    shares_at_most(&HANDLING_DELAY_SHARES, days.checked_sub(declared))
}

fn shares_at_most(shares: &[f64], extra: Option<u32>) -> f64 {
    extra.map_or(0.0, |extra| {
        shares.iter().take(extra as usize + 1).sum::<f64>().min(1.0)
    })
}

/// The smallest transit (working days) that a share `q` of parcels on a lane of `base` days
/// make: the truth's quantile.
pub fn transit_quantile(base: u32, q: f64) -> u32 {
    (base..base + 60)
        .find(|&days| transit_at_most(base, days) >= q - 1e-12)
        .unwrap_or(base + 60)
}

/// The truth's quantile of handling for a warehouse that declares `declared` days.
pub fn handling_quantile(declared: u32, q: f64) -> u32 {
    (declared..declared + 60)
        .find(|&days| handling_at_most(declared, days) >= q - 1e-12)
        .unwrap_or(declared + 60)
}

/// The day handling starts for an order at `placed_at`: that day if it is a working day and
/// the order came before `cutoff_minute` (IST), else the next working day.
pub fn handling_starts(calendar: &WorkCalendar, placed_at: i64, cutoff_minute: u32) -> IstDate {
    let day = IstDate::of_instant(placed_at);
    if calendar.works_on(day) && ist_minute_of_day(placed_at) < cutoff_minute {
        day
    } else {
        calendar.on_or_after(day.plus_days(1))
    }
}

/// The day an order at `placed_at` arrives at the truth's quantile `q`: what an oracle that
/// knew the lane would promise.
pub fn oracle_promise(
    calendar: &WorkCalendar,
    placed_at: i64,
    cutoff_minute: u32,
    declared: u32,
    base: u32,
    q: f64,
) -> IstDate {
    let starts = handling_starts(calendar, placed_at, cutoff_minute);
    let shipped = calendar.after_working_days(starts, handling_quantile(declared, q));
    calendar.after_working_days(shipped, transit_quantile(base, q))
}

/// A transit draw on a lane of `base` days.
pub fn draw_transit(rng: &mut impl Rng, base: u32) -> u32 {
    base + draw(rng, &DELAY_SHARES)
}

/// A handling draw for a warehouse that declares `declared` days.
pub fn draw_handling(rng: &mut impl Rng, declared: u32) -> u32 {
    declared + draw(rng, &HANDLING_DELAY_SHARES)
}

fn draw(rng: &mut impl Rng, shares: &[f64]) -> u32 {
    let mut u: f64 = rng.random();
    for (extra, share) in shares.iter().enumerate() {
        if u < *share {
            return extra as u32;
        }
        u -= share;
    }
    (shares.len() - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Pincode;
    use model::geo::Directory;
    use rand::SeedableRng;

    fn place(directory: &Directory, pincode: &str) -> Place {
        directory
            .get(Pincode::parse(pincode).unwrap())
            .unwrap()
            .clone()
    }

    #[test]
    fn lanes_differ_by_distance_zone_and_speed() {
        let directory = Directory::load();
        let delhi = place(&directory, "110001");
        let mumbai = place(&directory, "400001");
        let guwahati = place(&directory, "781001");
        let port_blair = place(&directory, "744101");
        let standard = CourierSpeed::Standard;
        let metro = base_transit_days(&delhi, &mumbai, standard);
        let north_east = base_transit_days(&delhi, &guwahati, standard);
        let islands = base_transit_days(&mumbai, &port_blair, standard);
        let local = base_transit_days(&delhi, &delhi, standard);
        assert!(local < metro && metro < north_east && north_east < islands);
        assert!(
            base_transit_days(&delhi, &guwahati, CourierSpeed::Express)
                < base_transit_days(&delhi, &guwahati, CourierSpeed::Economy)
        );
    }

    #[test]
    fn draws_follow_the_written_shares() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let draws: Vec<u32> = (0..100_000).map(|_| draw_transit(&mut rng, 3)).collect();
        for days in 3..10 {
            let seen = draws.iter().filter(|&&d| d <= days).count() as f64 / 1e5;
            assert!(
                (seen - transit_at_most(3, days)).abs() < 0.01,
                "{days}: {seen}"
            );
        }
        assert_eq!(transit_at_most(3, 2), 0.0);
        assert!((DELAY_SHARES.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((HANDLING_DELAY_SHARES.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(national_holidays().len(), NATIONAL_HOLIDAYS.len());
    }
}
