//! Real India Post pincodes with coordinates, shipped in `data/pincodes.csv`, and distances.

use std::collections::HashMap;

use crate::Pincode;

/// Contains data from the All India Pincode Directory, India Post / data.gov.in (GODL-India).
const PINCODES_CSV: &str = include_str!("../data/pincodes.csv");

/// One pincode's centroid and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub pincode: Pincode,
    pub latitude: f64,
    pub longitude: f64,
    pub district: String,
    pub state: String,
    /// Whether any post office at this pincode delivers.
    pub delivery: bool,
}

/// Every shipped pincode, parsed once per call; callers keep the result.
pub fn places() -> Vec<Place> {
    PINCODES_CSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let pincode = Pincode::parse(fields.next()?)?;
            let latitude = fields.next()?.parse().ok()?;
            let longitude = fields.next()?.parse().ok()?;
            let district = fields.next()?.to_owned();
            let state = fields.next()?.to_owned();
            let delivery = fields.next()? == "1";
            Some(Place {
                pincode,
                latitude,
                longitude,
                district,
                state,
                delivery,
            })
        })
        .collect()
}

/// Every shipped pincode by number, for lookups on a hot path (radius checks, city scopes).
#[derive(Debug, Clone)]
pub struct Directory {
    by_pincode: HashMap<u32, Place>,
}

impl Directory {
    pub fn load() -> Self {
        Self {
            by_pincode: places()
                .into_iter()
                .map(|place| (place.pincode.number(), place))
                .collect(),
        }
    }

    pub fn get(&self, pincode: Pincode) -> Option<&Place> {
        self.by_pincode.get(&pincode.number())
    }

    pub fn len(&self) -> usize {
        self.by_pincode.len()
    }

    /// Every place, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Place> {
        self.by_pincode.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pincode.is_empty()
    }
}

impl Place {
    pub fn coordinates(&self) -> (f64, f64) {
        (self.latitude, self.longitude)
    }
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_row_parses() {
        let rows = PINCODES_CSV.lines().count() - 1;
        let places = places();
        assert_eq!(places.len(), rows);
        assert!(places.len() > 19_000);
        let gpo = places
            .iter()
            .find(|p| p.pincode.number() == 110_001)
            .unwrap();
        assert_eq!(
            (gpo.district.as_str(), gpo.state.as_str()),
            ("New Delhi", "Delhi")
        );
    }

    #[test]
    fn the_directory_finds_a_pincode_and_misses_an_unknown_one() {
        let directory = Directory::load();
        assert_eq!(directory.len(), places().len());
        let mumbai = directory.get(Pincode::parse("400001").unwrap()).unwrap();
        assert_eq!(mumbai.state, "Maharashtra");
        assert!(directory.get(Pincode::parse("999999").unwrap()).is_none());
    }

    #[test]
    fn delhi_to_mumbai_is_about_1150_km() {
        let km = distance_km((28.6139, 77.2090), (19.0760, 72.8777));
        assert!((1140.0..1160.0).contains(&km), "{km}");
    }
}
