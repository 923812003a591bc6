//! Where a supply is taxed: the GST state code of a place (India Post's state names), a
//! GSTIN's state, and the split of a line's tax into CGST + SGST (within the supplier's state)
//! or IGST (across states).

/// GST state codes by the state names India Post's directory uses.
const STATES: &[(&str, &str)] = &[
    ("01", "Jammu And Kashmir"),
    ("02", "Himachal Pradesh"),
    ("03", "Punjab"),
    ("04", "Chandigarh"),
    ("05", "Uttarakhand"),
    ("06", "Haryana"),
    ("07", "Delhi"),
    ("08", "Rajasthan"),
    ("09", "Uttar Pradesh"),
    ("10", "Bihar"),
    ("11", "Sikkim"),
    ("12", "Arunachal Pradesh"),
    ("13", "Nagaland"),
    ("14", "Manipur"),
    ("15", "Mizoram"),
    ("16", "Tripura"),
    ("17", "Meghalaya"),
    ("18", "Assam"),
    ("19", "West Bengal"),
    ("20", "Jharkhand"),
    ("21", "Odisha"),
    ("22", "Chhattisgarh"),
    ("23", "Madhya Pradesh"),
    ("24", "Gujarat"),
    ("26", "The Dadra And Nagar Haveli And Daman And Diu"),
    ("27", "Maharashtra"),
    ("29", "Karnataka"),
    ("30", "Goa"),
    ("31", "Lakshadweep"),
    ("32", "Kerala"),
    ("33", "Tamil Nadu"),
    ("34", "Puducherry"),
    ("35", "Andaman And Nicobar Islands"),
    ("36", "Telangana"),
    ("37", "Andhra Pradesh"),
    ("38", "Ladakh"),
];

/// `29-Karnataka`, the way GSTR-1 names a place of supply.
pub fn place_of_supply(state: &str) -> Option<String> {
    STATES
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(state))
        .map(|(code, name)| format!("{code}-{name}"))
}

/// The state a GSTIN is registered in, as a place of supply (`29-Karnataka`), or why the
/// GSTIN is not one: 15 characters, the first two a state code.
pub fn gstin_state(gstin: &str) -> Result<String, String> {
    let valid_shape = gstin.len() == 15 && gstin.chars().all(|c| c.is_ascii_alphanumeric());
    let state = valid_shape
        .then(|| STATES.iter().find(|(code, _)| gstin.starts_with(code)))
        .flatten();
    state
        .map(|(code, name)| format!("{code}-{name}"))
        .ok_or_else(|| {
            format!(
                "GSTIN {gstin:?} is not 15 letters and digits starting with a state code (e.g. 29 for Karnataka)"
            )
        })
}

/// A line's tax split by where it is supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub cgst: i64,
    pub sgst: i64,
    pub igst: i64,
}

/// Within the supplier's state the tax is half central, half state (the odd paisa to the
/// state half); across states, or where either state is unknown, it is all integrated.
pub fn split(tax: i64, supplier: Option<&str>, place: Option<&str>) -> Split {
    match (supplier, place) {
        (Some(supplier), Some(place)) if supplier == place => {
            let cgst = tax / 2;
            Split {
                cgst,
                sgst: tax - cgst,
                igst: 0,
            }
        }
        _ => Split {
            igst: tax,
            ..Split::default()
        },
    }
}
