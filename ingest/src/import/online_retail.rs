//! The UCI Online Retail file, read strictly: each CSV record becomes a typed line or a
//! problem naming its line number. No I/O here; the importer feeds records in.
//!
//! Columns: `InvoiceNo, StockCode, Description, Quantity, InvoiceDate (M/D/YY H:MM, UK time,
//! which is UTC in December), UnitPrice (pounds), CustomerID, Country`. An invoice number
//! starting with `C` is a cancellation, with negative quantities.

/// One importable invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetailLine {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub invoice: String,
    pub cancellation: bool,
    pub stock_code: String,
    pub description: String,
    /// Units sold; for a cancellation, units given back (positive).
    pub quantity: u32,
    /// UTC ms.
    pub invoiced_at: i64,
    /// Pence.
    pub unit_price_minor: i64,
    pub customer: Option<String>,
    pub country: String,
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: u64,
    /// `malformed` (the line is broken) or a reason a well-formed line cannot be replayed.
    pub code: &'static str,
    pub message: String,
}

impl LineProblem {
    pub fn new(line: u64, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            line,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {} ({})", self.line, self.message, self.code)
    }
}

pub const HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// A line that is broken: wrong field count, unreadable number or date, missing id.
pub const MALFORMED: &str = "malformed";
/// A sale of zero or fewer units, or a cancellation of more: stock adjustments, not sales.
pub const NOT_A_SALE: &str = "not_a_sale";
/// A line priced at zero (samples, write-offs): nothing to pay or refund.
pub const ZERO_PRICE: &str = "zero_price";

/// Parses one record (its fields) found at `line`.
pub fn parse_line(line: u64, fields: &[&str]) -> Result<RetailLine, LineProblem> {
    let malformed = |message: String| LineProblem::new(line, MALFORMED, message);
    let [
        invoice,
        stock_code,
        description,
        quantity,
        date,
        price,
        customer,
        country,
    ] = fields
    else {
        return Err(malformed(format!(
            "{} fields, expected 8 ({})",
            fields.len(),
            HEADER.join(",")
        )));
    };
    let invoice = invoice.trim();
    let (cancellation, number) = match invoice.strip_prefix('C') {
        Some(number) => (true, number),
        None => (false, invoice),
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(malformed(format!(
            "InvoiceNo {invoice:?} is not an invoice number"
        )));
    }
    let stock_code = stock_code.trim();
    if stock_code.is_empty() {
        return Err(malformed("StockCode is empty".to_owned()));
    }
    let quantity: i64 = quantity
        .trim()
        .parse()
        .map_err(|_| malformed(format!("Quantity {quantity:?} is not a whole number")))?;
    let invoiced_at = parse_invoice_date(date.trim())
        .ok_or_else(|| malformed(format!("InvoiceDate {date:?} is not M/D/YY H:MM")))?;
    let unit_price_minor = parse_pounds(price.trim())
        .ok_or_else(|| malformed(format!("UnitPrice {price:?} is not an amount in pounds")))?;
    let units = if cancellation { -quantity } else { quantity };
    let units = u32::try_from(units)
        .ok()
        .filter(|u| *u > 0)
        .ok_or_else(|| {
            let what = if cancellation { "cancellation" } else { "sale" };
            LineProblem::new(
                line,
                NOT_A_SALE,
                format!("a {what} of {quantity} units is a stock adjustment"),
            )
        })?;
    if unit_price_minor <= 0 {
        return Err(LineProblem::new(
            line,
            ZERO_PRICE,
            format!("UnitPrice {price} has nothing to pay or refund"),
        ));
    }
    let customer = customer.trim();
    let customer = match customer {
        "" => None,
        // Some exports write the id as a float.
        id => Some(id.strip_suffix(".0").unwrap_or(id).to_owned()),
    };
    Ok(RetailLine {
        line,
        invoice: invoice.to_owned(),
        cancellation,
        stock_code: stock_code.to_owned(),
        description: description.trim().to_owned(),
        quantity: units,
        invoiced_at,
        unit_price_minor,
        customer,
        country: country.trim().to_owned(),
    })
}

/// `12/1/10 8:26` -> UTC ms. Two-digit years are 20YY.
pub fn parse_invoice_date(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(' ')?;
    let mut date = date.split('/');
    let month: u32 = date.next()?.parse().ok()?;
    let day: u32 = date.next()?.parse().ok()?;
    let year: i64 = date.next()?.parse().ok()?;
    if date.next().is_some() {
        return None;
    }
    let year = if year < 100 { 2000 + year } else { year };
    let (hour, minute) = time.split_once(':')?;
    let (hour, minute): (i64, i64) = (hour.parse().ok()?, minute.parse().ok()?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2.55` -> 255 pence; more than two decimals round half up (`0.165` -> 17).
pub fn parse_pounds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let pounds: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Half up at the third decimal; later decimals cannot change that outcome.
    let digits = format!("{fraction:0<3}");
    let thousandths: i64 = digits[..3].parse().ok()?;
    let pence = thousandths / 10 + i64::from(thousandths % 10 >= 5);
    pounds.checked_mul(100)?.checked_add(pence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<&str> {
        line.split(',').collect()
    }

    #[test]
    fn a_sale_line_is_typed() {
        let line = parse_line(
            2,
            &fields("536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/10 8:26,2.55,17850,United Kingdom"),
        )
        .expect("good line");
        assert_eq!(line.invoice, "536365");
        assert!(!line.cancellation);
        assert_eq!(line.quantity, 6);
        assert_eq!(line.unit_price_minor, 255);
        assert_eq!(line.customer.as_deref(), Some("17850"));
        // 2010-12-01T08:26:00Z
        assert_eq!(line.invoiced_at, 1_291_191_960_000);
    }

    #[test]
    fn a_cancellation_gives_units_back() {
        let line = parse_line(
            9,
            &fields("C536379,D,Discount,-1,12/1/10 9:41,27.5,14527,United Kingdom"),
        )
        .expect("good line");
        assert!(line.cancellation);
        assert_eq!(line.quantity, 1);
        assert_eq!(line.unit_price_minor, 2_750);
    }

    #[test]
    fn broken_lines_name_their_line_and_field() {
        let cases = [
            ("536365,85123A,X,6,12/1/10 8:26,2.55,17850", "7 fields"),
            (
                "536365,85123A,X,six,12/1/10 8:26,2.55,17850,UK",
                "Quantity \"six\"",
            ),
            (
                "536365,85123A,X,6,13/1/10 8:26,2.55,17850,UK",
                "InvoiceDate",
            ),
            (
                "536365,85123A,X,6,2/30/10 8:26,2.55,17850,UK",
                "InvoiceDate",
            ),
            ("536365,85123A,X,6,12/1/10 8:26,£2.55,17850,UK", "UnitPrice"),
            ("536365,,X,6,12/1/10 8:26,2.55,17850,UK", "StockCode"),
            (",85123A,X,6,12/1/10 8:26,2.55,17850,UK", "InvoiceNo"),
        ];
        for (text, names) in cases {
            let problem = parse_line(41, &fields(text)).expect_err(text);
            assert_eq!(problem.code, MALFORMED, "{text}");
            assert_eq!(problem.line, 41);
            assert!(problem.message.contains(names), "{text}: {problem}");
        }
    }

    #[test]
    fn adjustments_and_free_lines_are_not_sales() {
        let zero = parse_line(
            3,
            &fields("536414,22139,,56,12/1/10 11:52,0,,United Kingdom"),
        );
        assert_eq!(zero.expect_err("free").code, ZERO_PRICE);
        let negative = parse_line(
            4,
            &fields("536589,21777,,-10,12/1/10 16:50,0,,United Kingdom"),
        );
        assert_eq!(negative.expect_err("adjustment").code, NOT_A_SALE);
        let positive_cancel = parse_line(5, &fields("C536589,21777,,10,12/1/10 16:50,1,,UK"));
        assert_eq!(positive_cancel.expect_err("odd").code, NOT_A_SALE);
    }

    #[test]
    fn dates_are_utc_and_checked() {
        assert_eq!(parse_invoice_date("1/1/1970 0:00"), Some(0));
        assert_eq!(parse_invoice_date("12/9/11 12:50"), Some(1_323_435_000_000));
        assert_eq!(
            parse_invoice_date("2/29/12 0:00").map(|ms| ms / 86_400_000),
            Some(15_399)
        );
        for bad in [
            "2/29/11 0:00",
            "12/1/10",
            "12/1/10 24:00",
            "12/1/10 8:60",
            "0/1/10 1:00",
        ] {
            assert_eq!(parse_invoice_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn pounds_become_pence_rounding_half_up() {
        assert_eq!(parse_pounds("2.55"), Some(255));
        assert_eq!(parse_pounds("165"), Some(16_500));
        assert_eq!(parse_pounds("0.165"), Some(17));
        assert_eq!(parse_pounds("0.164"), Some(16));
        assert_eq!(parse_pounds(".5"), Some(50));
        for bad in ["", ".", "-1", "1.2.3", "1e3", "£1"] {
            assert_eq!(parse_pounds(bad), None, "{bad}");
        }
    }
}
