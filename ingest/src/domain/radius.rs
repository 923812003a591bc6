//! The hyperlocal rule: a hyperlocal merchant only takes orders whose delivery pincode lies
//! within its radius (5 km by default) of the store, by great-circle distance between pincode
//! centroids.

use model::Pincode;
use model::geo::{Directory, distance_km};

pub const DEFAULT_RADIUS_KM: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum RadiusError {
    #[error(
        "pincode {delivery} is {distance_km:.1} km from the store at {store}; this merchant delivers within {radius_km} km"
    )]
    OutOfRadius {
        store: Pincode,
        delivery: Pincode,
        distance_km: f64,
        radius_km: f64,
    },
    #[error("pincode {0} is not in the India Post directory")]
    UnknownPincode(Pincode),
}

/// The distance from `store` to `delivery` in km when it is within `radius_km`.
pub fn check_radius(
    directory: &Directory,
    store: Pincode,
    delivery: Pincode,
    radius_km: f64,
) -> Result<f64, RadiusError> {
    let locate = |pincode| {
        directory
            .get(pincode)
            .map(|place| place.coordinates())
            .ok_or(RadiusError::UnknownPincode(pincode))
    };
    let distance_km = distance_km(locate(store)?, locate(delivery)?);
    if distance_km <= radius_km {
        Ok(distance_km)
    } else {
        Err(RadiusError::OutOfRadius {
            store,
            delivery,
            distance_km,
            radius_km,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;

    static DIRECTORY: LazyLock<Directory> = LazyLock::new(Directory::load);

    fn pin(code: &str) -> Pincode {
        Pincode::parse(code).unwrap()
    }

    #[test]
    fn the_same_pincode_is_always_in_range() {
        assert_eq!(
            check_radius(&DIRECTORY, pin("560001"), pin("560001"), DEFAULT_RADIUS_KM),
            Ok(0.0)
        );
    }

    #[test]
    fn a_neighbouring_pincode_is_in_range_and_another_city_is_not() {
        // Bengaluru GPO (560001) to 560042 is about 2.3 km between the shipped centroids.
        let near = check_radius(&DIRECTORY, pin("560001"), pin("560042"), DEFAULT_RADIUS_KM);
        assert!(near.is_ok_and(|km| km < DEFAULT_RADIUS_KM), "{near:?}");
        let far = check_radius(&DIRECTORY, pin("560001"), pin("400001"), DEFAULT_RADIUS_KM);
        match far {
            Err(RadiusError::OutOfRadius { distance_km, .. }) => {
                assert!((800.0..900.0).contains(&distance_km), "{distance_km}")
            }
            other => panic!("expected out of radius, got {other:?}"),
        }
    }

    #[test]
    fn a_wider_radius_takes_what_the_default_refuses() {
        let km = check_radius(&DIRECTORY, pin("560001"), pin("560100"), 50.0).unwrap();
        assert!(km > 5.0, "{km}");
        assert!(check_radius(&DIRECTORY, pin("560001"), pin("560100"), DEFAULT_RADIUS_KM).is_err());
    }

    #[test]
    fn an_unknown_pincode_is_named() {
        let error = check_radius(&DIRECTORY, pin("560001"), pin("999999"), 5.0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "pincode 999999 is not in the India Post directory"
        );
    }
}
