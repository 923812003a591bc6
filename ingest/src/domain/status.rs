//! The order state machine: which action may move an order out of which status.
//!
//! ```text
//! placed -> confirmed -> packed -> shipped -> delivered -> refunded
//!   |  \        |           |
//!   |   `-------+-----------+--> cancelled
//!   `--> failed (payment failed, reservation expired)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum OrderStatus {
    /// Stock reserved, payment pending.
    Placed,
    /// Payment captured.
    Confirmed,
    Packed,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
    /// Refunded after delivery (a return).
    Refunded,
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderAction {
    Confirm,
    Pack,
    Ship,
    Deliver,
    Cancel,
    Fail,
    Refund,
}

/// The action does not apply to an order in this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot be {}", action.past_participle())]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub action: OrderAction,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Placed,
        OrderStatus::Confirmed,
        OrderStatus::Packed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Failed,
        OrderStatus::Refunded,
    ];

    /// The status after `action`, or why it is refused.
    pub fn apply(self, action: OrderAction) -> Result<OrderStatus, IllegalTransition> {
        use OrderAction as A;
        use OrderStatus as S;
        Ok(match (self, action) {
            (S::Placed, A::Confirm) => S::Confirmed,
            (S::Confirmed, A::Pack) => S::Packed,
            (S::Packed, A::Ship) => S::Shipped,
            (S::Shipped, A::Deliver) => S::Delivered,
            // Once the parcel is with the courier, only a return (refund) undoes the sale.
            (S::Placed | S::Confirmed | S::Packed, A::Cancel) => S::Cancelled,
            (S::Placed, A::Fail) => S::Failed,
            (S::Delivered, A::Refund) => S::Refunded,
            _ => return Err(IllegalTransition { from: self, action }),
        })
    }

    /// No action applies any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Cancelled | OrderStatus::Failed | OrderStatus::Refunded
        )
    }

    /// Whether the order still holds reserved (not yet sold) stock.
    pub fn holds_reservation(self) -> bool {
        self == OrderStatus::Placed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Packed => "packed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Failed => "failed",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrderAction {
    pub const ALL: [OrderAction; 7] = [
        OrderAction::Confirm,
        OrderAction::Pack,
        OrderAction::Ship,
        OrderAction::Deliver,
        OrderAction::Cancel,
        OrderAction::Fail,
        OrderAction::Refund,
    ];

    fn past_participle(self) -> &'static str {
        match self {
            OrderAction::Confirm => "confirmed",
            OrderAction::Pack => "packed",
            OrderAction::Ship => "shipped",
            OrderAction::Deliver => "delivered",
            OrderAction::Cancel => "cancelled",
            OrderAction::Fail => "failed",
            OrderAction::Refund => "refunded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OrderAction as A;
    use super::OrderStatus as S;

    #[test]
    fn the_happy_path_runs_from_placed_to_delivered() {
        let mut status = S::Placed;
        for action in [A::Confirm, A::Pack, A::Ship, A::Deliver] {
            status = status.apply(action).unwrap();
        }
        assert_eq!(status, S::Delivered);
        assert_eq!(status.apply(A::Refund), Ok(S::Refunded));
    }

    #[test]
    fn exactly_these_transitions_are_legal() {
        let legal: Vec<(S, A, S)> = S::ALL
            .iter()
            .flat_map(|from| A::ALL.iter().map(move |action| (*from, *action)))
            .filter_map(|(from, action)| from.apply(action).ok().map(|to| (from, action, to)))
            .collect();
        assert_eq!(
            legal,
            vec![
                (S::Placed, A::Confirm, S::Confirmed),
                (S::Placed, A::Cancel, S::Cancelled),
                (S::Placed, A::Fail, S::Failed),
                (S::Confirmed, A::Pack, S::Packed),
                (S::Confirmed, A::Cancel, S::Cancelled),
                (S::Packed, A::Ship, S::Shipped),
                (S::Packed, A::Cancel, S::Cancelled),
                (S::Shipped, A::Deliver, S::Delivered),
                (S::Delivered, A::Refund, S::Refunded),
            ]
        );
    }

    #[test]
    fn final_statuses_accept_nothing() {
        for status in S::ALL.into_iter().filter(|s| s.is_final()) {
            for action in A::ALL {
                assert!(
                    status.apply(action).is_err(),
                    "{status} accepted {action:?}"
                );
            }
        }
    }

    #[test]
    fn an_illegal_transition_says_what_and_why() {
        let error = S::Shipped.apply(A::Cancel).unwrap_err();
        assert_eq!(
            error.to_string(),
            "an order that is shipped cannot be cancelled"
        );
    }

    #[test]
    fn statuses_parse_back_from_their_names() {
        for status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("lost"), None);
    }
}
