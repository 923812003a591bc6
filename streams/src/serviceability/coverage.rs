//! A courier's coverage list, as couriers publish it: a CSV with a header naming at least
//! `pincode`, `prepaid`, `cod`, `pickup` and `oda` (out of delivery area), in any order and
//! any case, other columns (city, state, reverse pickup...) ignored. Flags are `Y`/`N`,
//! `yes`/`no`, `true`/`false` or `1`/`0`.
//!
//! Every bad line is reported by its number and the good ones are kept: a list of 20,000
//! pincodes with three typos still registers 19,997. The result is one
//! [`CoverageUpserted`] per sorting district (the first three digits), the unit the
//! compacted topic replaces.

use std::collections::BTreeMap;

use model::payload::{CoverageEntry, CoverageUpserted};
use model::{CourierId, Pincode};

/// One line that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based, the header being line 1.
    pub line: usize,
    pub reason: String,
}

/// What a coverage file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageFile {
    pub districts: Vec<CoverageUpserted>,
    pub pincodes: usize,
    pub bad_lines: Vec<BadLine>,
}

/// Why the file as a whole cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverageError {
    #[error("the file is empty; it needs a header line naming pincode, prepaid, cod, pickup, oda")]
    Empty,
    #[error("line 1: the header has no {0:?} column (it needs pincode, prepaid, cod, pickup, oda)")]
    MissingColumn(&'static str),
}

const COLUMNS: [(&str, &[&str]); 5] = [
    ("pincode", &["pincode", "pin", "pin code"]),
    ("prepaid", &["prepaid"]),
    ("cod", &["cod", "cash_on_delivery", "cash on delivery"]),
    ("pickup", &["pickup", "pick up"]),
    (
        "oda",
        &["oda", "out_of_delivery_area", "out of delivery area"],
    ),
];

fn flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "1" => Some(true),
        "n" | "no" | "false" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Splits one CSV line, honouring double quotes (`"Bengaluru, Urban"`).
fn fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Reads `text` as `courier`'s coverage list.
pub fn parse(courier: &CourierId, text: &str) -> Result<CoverageFile, CoverageError> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.find(|(_, line)| !line.trim().is_empty()) else {
        return Err(CoverageError::Empty);
    };
    let names: Vec<String> = fields(header.trim_start_matches('\u{feff}'))
        .iter()
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut index = [0usize; 5];
    for (slot, (column, aliases)) in index.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|name| aliases.contains(&name.as_str()))
            .ok_or(CoverageError::MissingColumn(column))?;
    }
    let mut by_district: BTreeMap<u32, BTreeMap<Pincode, CoverageEntry>> = BTreeMap::new();
    let mut bad_lines = Vec::new();
    let mut first_line_of: BTreeMap<Pincode, usize> = BTreeMap::new();
    for (i, line) in lines {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let values = fields(line);
        let get = |slot: usize| values.get(index[slot]).map(String::as_str);
        let bad = |reason: String| BadLine {
            line: number,
            reason,
        };
        let Some(pincode_text) = get(0) else {
            bad_lines.push(bad(format!(
                "{} fields; the header has {}",
                values.len(),
                names.len()
            )));
            continue;
        };
        let Some(pincode) = Pincode::parse(pincode_text.trim()) else {
            bad_lines.push(bad(format!(
                "pincode {pincode_text:?} is not six digits, the first 1-9"
            )));
            continue;
        };
        let mut flags = [false; 4];
        let mut broken = None;
        for (slot, value) in flags.iter_mut().enumerate() {
            let text = get(slot + 1).unwrap_or_default();
            match flag(text) {
                Some(set) => *value = set,
                None => {
                    broken = Some(format!(
                        "{} {text:?} is not Y/N, yes/no, true/false or 1/0",
                        COLUMNS[slot + 1].0
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = broken {
            bad_lines.push(bad(reason));
            continue;
        }
        if let Some(first) = first_line_of.get(&pincode) {
            bad_lines.push(bad(format!(
                "pincode {pincode} is listed again (first on line {first}); the first is kept"
            )));
            continue;
        }
        first_line_of.insert(pincode, number);
        let [prepaid, cash_on_delivery, pickup, out_of_delivery_area] = flags;
        by_district
            .entry(pincode.number() / 1000)
            .or_default()
            .insert(
                pincode,
                CoverageEntry {
                    pincode,
                    prepaid,
                    cash_on_delivery,
                    pickup,
                    out_of_delivery_area,
                },
            );
    }
    let pincodes = first_line_of.len();
    let districts = by_district
        .into_iter()
        .filter_map(|(district, entries)| {
            // Every entry was checked to be a pincode of its district, so `new` accepts it.
            CoverageUpserted::new(courier.clone(), district, entries.into_values().collect()).ok()
        })
        .collect();
    Ok(CoverageFile {
        districts,
        pincodes,
        bad_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_lines_are_kept_and_bad_ones_named_by_number() {
        let text = "City,PINCODE,Prepaid,COD,Pickup,ODA\n\
                    \"Bengaluru, Urban\",560034,Y,Y,Y,N\n\
                    Bengaluru,560095,yes,no,1,0\n\
                    Delhi,11001,Y,Y,Y,N\n\
                    Delhi,110001,Y,maybe,Y,N\n\
                    Delhi,110002,Y,Y,Y,N\n\
                    Bengaluru,560034,N,N,N,N\n\
                    \n\
                    Mumbai\n";
        let file = parse(&CourierId::new("cr-1"), text).unwrap();
        assert_eq!(file.pincodes, 3);
        let lines: Vec<usize> = file.bad_lines.iter().map(|b| b.line).collect();
        assert_eq!(lines, [4, 5, 7, 9], "{:?}", file.bad_lines);
        assert!(file.bad_lines[1].reason.contains("cod \"maybe\""));
        assert!(file.bad_lines[2].reason.contains("first on line 2"));
        let districts: Vec<u32> = file.districts.iter().map(|d| d.district()).collect();
        assert_eq!(districts, [110, 560]);
        let bengaluru = &file.districts[1];
        assert_eq!(bengaluru.key(), "cr-1/560");
        assert_eq!(bengaluru.pincodes().len(), 2);
        assert!(!bengaluru.pincodes()[1].cash_on_delivery);
    }

    #[test]
    fn a_header_without_a_needed_column_is_refused() {
        assert_eq!(
            parse(
                &CourierId::new("cr-1"),
                "pincode,prepaid,cod,pickup\n560034,Y,Y,Y"
            ),
            Err(CoverageError::MissingColumn("oda"))
        );
        assert_eq!(
            parse(&CourierId::new("cr-1"), "\n\n"),
            Err(CoverageError::Empty)
        );
    }
}
