//! Stock of one product at one warehouse: units on hand and units reserved for placed orders.
//! Reserving never takes more than is available, so stock never goes negative however many
//! buyers race; the storage layer applies these rules inside one write transaction.

use serde::{Deserialize, Serialize};

/// `on_hand >= reserved >= 0` always holds; `available` is what a new order may reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockLevel {
    on_hand: i64,
    reserved: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    #[error("only {available} available, {requested} requested")]
    OutOfStock { available: i64, requested: i64 },
    #[error("quantity must be positive, got {0}")]
    NotPositive(i64),
    #[error("cannot release or sell {requested}: only {reserved} reserved")]
    NotReserved { requested: i64, reserved: i64 },
    #[error("adjusting by {delta} would leave {on_hand} on hand, below the {reserved} reserved")]
    BelowReserved {
        delta: i64,
        on_hand: i64,
        reserved: i64,
    },
}

impl StockLevel {
    /// Stock with nothing reserved. Negative counts are refused.
    pub fn new(on_hand: i64) -> Result<Self, StockError> {
        StockLevel::default().adjust(on_hand)
    }

    /// Stock as stored; checks the invariant so a corrupt row is an error, not a sale.
    pub fn from_parts(on_hand: i64, reserved: i64) -> Result<Self, StockError> {
        if reserved < 0 || on_hand < reserved {
            return Err(StockError::BelowReserved {
                delta: 0,
                on_hand,
                reserved,
            });
        }
        Ok(Self { on_hand, reserved })
    }

    pub fn on_hand(self) -> i64 {
        self.on_hand
    }

    pub fn reserved(self) -> i64 {
        self.reserved
    }

    pub fn available(self) -> i64 {
        self.on_hand - self.reserved
    }

    /// Holds `quantity` for an order until it is paid, cancelled or expires.
    pub fn reserve(self, quantity: i64) -> Result<Self, StockError> {
        positive(quantity)?;
        if quantity > self.available() {
            return Err(StockError::OutOfStock {
                available: self.available(),
                requested: quantity,
            });
        }
        Ok(Self {
            reserved: self.reserved + quantity,
            ..self
        })
    }

    /// Gives reserved units back (payment failed, expired, cancelled before sale).
    pub fn release(self, quantity: i64) -> Result<Self, StockError> {
        self.take_reserved(quantity)?;
        Ok(Self {
            reserved: self.reserved - quantity,
            ..self
        })
    }

    /// Turns reserved units into a sale: they leave the shelf.
    pub fn sell(self, quantity: i64) -> Result<Self, StockError> {
        self.take_reserved(quantity)?;
        Ok(Self {
            on_hand: self.on_hand - quantity,
            reserved: self.reserved - quantity,
        })
    }

    /// Receipts, counts and corrections. May not drop below what is promised to orders.
    pub fn adjust(self, delta: i64) -> Result<Self, StockError> {
        let below = StockError::BelowReserved {
            delta,
            on_hand: self.on_hand.saturating_add(delta),
            reserved: self.reserved,
        };
        let on_hand = self.on_hand.checked_add(delta).ok_or(below)?;
        if on_hand < self.reserved {
            return Err(below);
        }
        Ok(Self { on_hand, ..self })
    }

    fn take_reserved(self, quantity: i64) -> Result<(), StockError> {
        positive(quantity)?;
        if quantity > self.reserved {
            return Err(StockError::NotReserved {
                requested: quantity,
                reserved: self.reserved,
            });
        }
        Ok(())
    }
}

fn positive(quantity: i64) -> Result<(), StockError> {
    if quantity > 0 {
        Ok(())
    } else {
        Err(StockError::NotPositive(quantity))
    }
}

/// When a reservation made at `placed_at` lapses (UTC ms).
pub fn reservation_expiry(placed_at: i64, hold_ms: i64) -> i64 {
    placed_at.saturating_add(hold_ms)
}

/// Whether a reservation expiring at `expires_at` has lapsed at `now`.
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    now >= expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_then_sell_takes_units_off_the_shelf() {
        let stock = StockLevel::new(10).unwrap().reserve(3).unwrap();
        assert_eq!(
            (stock.on_hand(), stock.reserved(), stock.available()),
            (10, 3, 7)
        );
        let stock = stock.sell(3).unwrap();
        assert_eq!(
            (stock.on_hand(), stock.reserved(), stock.available()),
            (7, 0, 7)
        );
    }

    #[test]
    fn release_puts_units_back_on_offer() {
        let stock = StockLevel::new(5).unwrap().reserve(5).unwrap();
        assert_eq!(stock.available(), 0);
        assert_eq!(stock.release(5).unwrap().available(), 5);
    }

    #[test]
    fn never_reserves_more_than_available() {
        let stock = StockLevel::new(2).unwrap().reserve(2).unwrap();
        assert_eq!(
            stock.reserve(1),
            Err(StockError::OutOfStock {
                available: 0,
                requested: 1
            })
        );
    }

    #[test]
    fn cannot_release_or_sell_what_is_not_reserved() {
        let stock = StockLevel::new(5).unwrap().reserve(1).unwrap();
        assert!(matches!(
            stock.release(2),
            Err(StockError::NotReserved { .. })
        ));
        assert!(matches!(stock.sell(2), Err(StockError::NotReserved { .. })));
        assert_eq!(stock.reserve(0), Err(StockError::NotPositive(0)));
    }

    #[test]
    fn a_correction_cannot_take_promised_units() {
        let stock = StockLevel::new(5).unwrap().reserve(4).unwrap();
        assert!(stock.adjust(-1).is_ok());
        assert!(matches!(
            stock.adjust(-2),
            Err(StockError::BelowReserved { .. })
        ));
        assert!(StockLevel::new(-1).is_err());
        assert!(StockLevel::from_parts(3, 4).is_err());
    }

    #[test]
    fn a_reservation_lapses_at_its_expiry() {
        let expires = reservation_expiry(1_000, 900_000);
        assert!(!is_expired(expires, expires - 1));
        assert!(is_expired(expires, expires));
    }
}
