//! The text a customer reads about a change to their order, and a merchant about its shop, as
//! a pure function of the event, what the store knows that the event does not carry, and the
//! channel's style.

use model::{CustomerId, Event, Money};

/// How a channel reads: `Short` fits one SMS (160 characters); `Long` is a full message with
/// a greeting, for a webhook that mails or pushes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Short,
    Long,
}

/// What the order event itself does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub customer_id: CustomerId,
    pub total: Money,
}

/// What a low-stock alert does not carry: whom to greet and what the product is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopFacts {
    pub merchant_name: String,
    /// `None` when the product is not in this core's catalogue.
    pub product_title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Named after the event that caused it, e.g. `order.shipped`.
    pub template: &'static str,
    pub text: String,
}

/// Whether customers are told about `event`. Payment captures and declines are told through
/// the order event they cause.
pub fn is_notified(event: &Event) -> bool {
    sentence(event).is_some()
}

/// The notification for `event`, or `None` when customers are not told about it.
pub fn render(event: &Event, facts: &OrderFacts, style: Style) -> Option<Rendered> {
    let sentence = sentence(event)?;
    let text = match style {
        Style::Short => sentence,
        Style::Long => format!(
            "Hello {},\n\n{sentence}\nOrder total: {}.\n\nThank you for shopping with us.",
            facts.customer_id,
            amount(&facts.total)
        ),
    };
    Some(Rendered {
        template: event.event_type().as_str(),
        text,
    })
}

/// The merchant's message about `event`, or `None` when merchants are not told about it.
pub fn render_for_merchant(event: &Event, facts: &ShopFacts, style: Style) -> Option<Rendered> {
    let Event::StockLow(low) = event else {
        return None;
    };
    let product = match &facts.product_title {
        Some(title) => format!("{title} ({})", low.product_id),
        None => low.product_id.to_string(),
    };
    let cover = low.days_of_cover().unwrap_or(f64::INFINITY);
    let sentence = format!(
        "Running low: {product} has {} left at {}, about {cover:.1} days at {:.1} sold a day; \
         restocking takes {} days.",
        low.available.max(0),
        low.warehouse_id,
        low.daily_velocity(),
        low.restock_lead_days
    );
    let text = match style {
        Style::Short => fit_one_sms(sentence),
        Style::Long => format!(
            "Hello {},\n\n{sentence}\nEverything running low in your shop is on the Products \
             page of your dashboard.",
            facts.merchant_name
        ),
    };
    Some(Rendered {
        template: event.event_type().as_str(),
        text,
    })
}

/// Cuts `text` to one SMS (160 bytes), marking the cut; a product title can be long.
fn fit_one_sms(mut text: String) -> String {
    const SMS: usize = 160;
    const MARK: &str = "...";
    if text.len() > SMS {
        let mut end = SMS - MARK.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(MARK);
    }
    text
}

/// The one sentence that says what happened, in every style.
fn sentence(event: &Event) -> Option<String> {
    Some(match event {
        Event::OrderPlaced(e) => format!(
            "Order {} is placed for {}; your items are held until you pay.",
            e.order_id,
            amount(&e.total)
        ),
        Event::OrderConfirmed(e) => format!("Payment received: order {} is confirmed.", e.order_id),
        Event::OrderPacked(e) => format!(
            "Order {} is packed and waiting for the courier.",
            e.order_id
        ),
        Event::OrderShipped(e) => format!(
            "Order {} is on its way with {} (shipment {}).",
            e.order_id, e.courier_id, e.shipment_id
        ),
        Event::OrderDelivered(e) => format!("Order {} was delivered.", e.order_id),
        Event::OrderCancelled(e) if e.refund.amount_minor > 0 => format!(
            "Order {} is cancelled; {} will be refunded.",
            e.order_id,
            amount(&e.refund)
        ),
        Event::OrderCancelled(e) => format!("Order {} is cancelled.", e.order_id),
        Event::OrderFailed(e) => format!("Order {} could not go ahead: {}.", e.order_id, e.reason),
        Event::OrderAddressChanged(e) => format!(
            "Order {} will now be delivered to pincode {}.",
            e.order_id, e.delivery_pincode
        ),
        Event::RefundIssued(e) => format!(
            "A refund of {} for order {} is on its way.",
            amount(&e.amount),
            e.order_id
        ),
        _ => return None,
    })
}

/// `INR 1234.50`: minor units shown with two decimals, as every currency we price in has.
fn amount(money: &Money) -> String {
    let sign = if money.amount_minor < 0 { "-" } else { "" };
    let minor = money.amount_minor.unsigned_abs();
    format!(
        "{} {sign}{}.{:02}",
        money.currency,
        minor / 100,
        minor % 100
    )
}

#[cfg(test)]
mod tests {
    use model::payload::*;
    use model::{CourierId, OrderId, PaymentId, RefundId, ShipmentId};

    use super::*;

    fn facts() -> OrderFacts {
        OrderFacts {
            customer_id: CustomerId::new("cust-7"),
            total: Money::inr(123_450),
        }
    }

    fn order() -> OrderId {
        OrderId::new("ord-1")
    }

    fn every_notified_event() -> Vec<Event> {
        vec![
            Event::OrderConfirmed(OrderConfirmed {
                order_id: order(),
                payment_id: PaymentId::new("pay-1"),
            }),
            Event::OrderShipped(OrderShipped {
                order_id: order(),
                shipment_id: ShipmentId::new("shp-1"),
                courier_id: CourierId::new("bluedart"),
            }),
            Event::OrderCancelled(OrderCancelled {
                order_id: order(),
                reason: "changed my mind".to_owned(),
                refund: Money::inr(86_415),
            }),
            Event::OrderFailed(OrderFailed {
                order_id: order(),
                reason: "payment declined".to_owned(),
            }),
            Event::RefundIssued(RefundIssued {
                refund_id: RefundId::new("ref-1"),
                payment_id: PaymentId::new("pay-1"),
                order_id: order(),
                amount: Money::inr(5),
            }),
        ]
    }

    #[test]
    fn short_texts_fit_one_sms_and_name_the_order() {
        for event in every_notified_event() {
            let rendered = render(&event, &facts(), Style::Short).expect("notified");
            assert!(rendered.text.len() <= 160, "{}", rendered.text);
            assert!(rendered.text.contains("ord-1"), "{}", rendered.text);
            assert_eq!(rendered.template, event.event_type().as_str());
        }
    }

    #[test]
    fn long_texts_greet_the_customer_and_carry_the_short_sentence() {
        for event in every_notified_event() {
            let short = render(&event, &facts(), Style::Short).expect("notified");
            let long = render(&event, &facts(), Style::Long).expect("notified");
            assert!(long.text.starts_with("Hello cust-7,"), "{}", long.text);
            assert!(long.text.contains(&short.text), "{}", long.text);
            assert!(long.text.contains("INR 1234.50"), "{}", long.text);
        }
    }

    #[test]
    fn amounts_show_rupees_and_paise() {
        let cancelled = Event::OrderCancelled(OrderCancelled {
            order_id: order(),
            reason: "r".to_owned(),
            refund: Money::inr(86_405),
        });
        let text = render(&cancelled, &facts(), Style::Short)
            .expect("notified")
            .text;
        assert_eq!(
            text,
            "Order ord-1 is cancelled; INR 864.05 will be refunded."
        );
        let refund = &every_notified_event()[4];
        let text = render(refund, &facts(), Style::Short)
            .expect("notified")
            .text;
        assert!(text.contains("INR 0.05"), "{text}");
    }

    #[test]
    fn a_cancellation_without_refund_promises_none() {
        let cancelled = Event::OrderCancelled(OrderCancelled {
            order_id: order(),
            reason: "r".to_owned(),
            refund: Money::inr(0),
        });
        let text = render(&cancelled, &facts(), Style::Short)
            .expect("notified")
            .text;
        assert_eq!(text, "Order ord-1 is cancelled.");
    }

    fn stock_low() -> Event {
        Event::StockLow(StockLow {
            product_id: model::ProductId::new("p-17"),
            warehouse_id: model::WarehouseId::new("w-2"),
            available: 6,
            units_sold: 21,
            velocity_days: 7,
            restock_lead_days: 5,
        })
    }

    fn shop(title: &str) -> ShopFacts {
        ShopFacts {
            merchant_name: "Asha Stores".to_owned(),
            product_title: Some(title.to_owned()),
        }
    }

    #[test]
    fn a_merchant_reads_its_cover_against_the_lead_time() {
        let short =
            render_for_merchant(&stock_low(), &shop("Cotton kurta"), Style::Short).expect("told");
        assert_eq!(
            short.text,
            "Running low: Cotton kurta (p-17) has 6 left at w-2, about 2.0 days at 3.0 sold a \
             day; restocking takes 5 days."
        );
        assert_eq!(short.template, "inventory.stock_low");
        let long =
            render_for_merchant(&stock_low(), &shop("Cotton kurta"), Style::Long).expect("told");
        assert!(long.text.starts_with("Hello Asha Stores,"), "{}", long.text);
        assert!(long.text.contains(&short.text), "{}", long.text);
        assert_eq!(
            render(&stock_low(), &facts(), Style::Short),
            None,
            "customers are not told about stock"
        );
    }

    #[test]
    fn a_long_title_is_cut_to_one_sms_on_a_character_boundary() {
        let title = "सूती कुर्ता ".repeat(20);
        let short = render_for_merchant(&stock_low(), &shop(&title), Style::Short).expect("told");
        assert!(short.text.len() <= 160, "{} bytes", short.text.len());
        assert!(short.text.ends_with("..."), "{}", short.text);
    }

    #[test]
    fn payment_events_are_told_through_the_order_event_they_cause() {
        let captured = Event::PaymentCaptured(PaymentCaptured {
            payment_id: PaymentId::new("pay-1"),
            order_id: order(),
            amount: Money::inr(1),
            provider: "upi-sim".to_owned(),
        });
        assert_eq!(render(&captured, &facts(), Style::Short), None);
    }
}
