//! How large what enters the pipeline may be. One oversized record must never stop a topic:
//! the orders core refuses text over these lengths with a 400 naming the field, and an event
//! whose encoding is over [`MAX_EVENT_BYTES`] inside the write transaction, so every event in
//! the outbox fits a Kafka message (the broker's default limit is 1 MB).

/// A product's title.
pub const TITLE_CHARS: usize = 300;
/// A product's brand or category.
pub const NAME_CHARS: usize = 100;
/// A product's description.
pub const DESCRIPTION_CHARS: usize = 20_000;
/// Attributes per product.
pub const ATTRIBUTES: usize = 64;
/// An attribute's name.
pub const ATTRIBUTE_NAME_CHARS: usize = 64;
/// An attribute's value.
pub const ATTRIBUTE_VALUE_CHARS: usize = 1_000;
/// A free-text reason (stock change, cancellation, refund, deactivation).
pub const REASON_CHARS: usize = 500;
/// Lines in one order: a shopper's cart is far smaller, but wholesale invoices are not (the
/// UCI Online Retail week has one of 675 lines). 2,000 lines encode well under
/// [`MAX_EVENT_BYTES`] and bind under SQLite's 32,766 parameters in one multi-row insert.
pub const ORDER_LINES: usize = 2_000;
/// One encoded event: a quarter of the broker's default message limit.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// `Err` with a message naming `field` when `value` is longer than `max` characters.
pub fn check_chars(field: &str, value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max {
        return Err(format!(
            "{field} is {chars} characters; at most {max} are accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_counted_in_characters_not_bytes() {
        assert!(check_chars("title", &"क".repeat(TITLE_CHARS), TITLE_CHARS).is_ok());
        let over = check_chars("title", &"a".repeat(TITLE_CHARS + 1), TITLE_CHARS);
        assert_eq!(
            over,
            Err("title is 301 characters; at most 300 are accepted".to_owned())
        );
    }
}
