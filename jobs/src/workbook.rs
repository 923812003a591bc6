//! The export on disk: one XLSX workbook formatted for people (bold frozen headers,
//! autofilters, rupee amounts, dates as dates, sensible widths) and one Parquet file per sheet
//! for programs, amounts in minor units.
//!
//! Sheets are written row by row in constant-memory mode; a sheet longer than Excel's
//! 1,048,576 rows continues on `Name (2)`, `Name (3)`, ... with the header repeated.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use model::calendar::IstDate;
use polars::prelude::*;
use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook, Worksheet};

use crate::JobError;
use crate::finance::{Export, Kind, Sheet};

/// Data rows per worksheet: Excel's row limit less the header.
pub const EXCEL_DATA_ROWS: usize = 1_048_575;

/// IST is UTC + 5:30.
const IST_OFFSET_MS: i64 = 19_800_000;

/// `finance-<merchant>-<period>`: the workbook's name without `.xlsx`, and the Parquet
/// twins' directory; `-provisional` is added while the month may still change. Characters other than letters,
/// digits, `-` and `_` in the merchant id become `_`, so the name is safe as a file name and
/// in a header.
pub fn base_name(export: &Export) -> String {
    let merchant: String = export
        .subject
        .merchant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let status = if export.subject.provisional() {
        "-provisional"
    } else {
        ""
    };
    format!("finance-{merchant}-{}{status}", export.subject.period)
}

/// Writes the workbook and the Parquet twins into `dir`; returns the paths written.
/// `progress` hears the rows written so far.
pub fn write_all(
    export: &Export,
    dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<PathBuf>, JobError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), e))?;
    let base = base_name(export);
    let xlsx = dir.join(format!("{base}.xlsx"));
    write_xlsx(export, &xlsx, progress)?;
    let twins = dir.join(&base);
    std::fs::create_dir_all(&twins)
        .map_err(|e| JobError::io(format!("creating {}", twins.display()), e))?;
    let mut written = vec![xlsx];
    for sheet in &export.sheets {
        let path = twins.join(format!("{}.parquet", sheet.file_stem()));
        write_parquet(sheet, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `sheet` as zstd Parquet.
pub fn write_parquet(sheet: &Sheet, path: &Path) -> Result<(), JobError> {
    let file =
        File::create(path).map_err(|e| JobError::io(format!("creating {}", path.display()), e))?;
    let mut frame = sheet.frame.clone();
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut frame)?;
    Ok(())
}

/// Writes the workbook to `path` (through a temporary file beside it, renamed when whole).
pub fn write_xlsx(
    export: &Export,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), JobError> {
    let mut workbook = Workbook::new();
    // Deflate at level 1 rather than the default 6: saving is most of an export's time, and
    // for a million sales lines it takes 18 s instead of 30 s for a file 1.6 times the size
    // (261 MB instead of 159 MB; BENCHMARKS.md).
    workbook.set_zip_compression_level(1);
    if let Some(dir) = path.parent() {
        workbook.set_tempdir(dir)?;
    }
    let mut formats = Formats::new();
    let mut written = 0u64;
    for sheet in &export.sheets {
        let rows = sheet.frame.height();
        let parts = rows.div_ceil(EXCEL_DATA_ROWS).max(1);
        for part in 0..parts {
            let name = if part == 0 {
                sheet.name.to_owned()
            } else {
                format!("{} ({})", sheet.name, part + 1)
            };
            let worksheet = workbook.add_worksheet_with_constant_memory()?;
            worksheet.set_name(name)?;
            let from = part * EXCEL_DATA_ROWS;
            let to = (from + EXCEL_DATA_ROWS).min(rows);
            write_part(worksheet, sheet, from, to, &mut formats, &mut |n| {
                progress(written + n);
            })?;
            written += (to - from) as u64;
        }
    }
    let partial = path.with_extension("xlsx.partial");
    workbook.save(&partial)?;
    std::fs::rename(&partial, path)
        .map_err(|e| JobError::io(format!("renaming {} into place", partial.display()), e))?;
    progress(written);
    Ok(())
}

struct Formats {
    header: Format,
    text: Format,
    count: Format,
    date: Format,
    time: Format,
    rate: Format,
    /// Amount formats by currency code, made on first use.
    money: HashMap<String, Format>,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            header: Format::new()
                .set_bold()
                .set_text_wrap()
                .set_align(FormatAlign::Top),
            text: Format::new(),
            count: Format::new().set_num_format("#,##0"),
            date: Format::new().set_num_format("dd-mm-yyyy"),
            time: Format::new().set_num_format("dd-mm-yyyy hh:mm"),
            rate: Format::new().set_num_format("0.00%"),
            money: HashMap::new(),
        }
    }

    fn money(&mut self, currency: &str) -> &Format {
        self.money.entry(currency.to_owned()).or_insert_with(|| {
            let pattern = match currency {
                // Indian digit grouping: 1,23,45,678.00.
                "INR" => "[$₹-4009]\\ #,##,##0.00;-[$₹-4009]\\ #,##,##0.00".to_owned(),
                other => format!("#,##0.00\\ \"{other}\";-#,##0.00\\ \"{other}\""),
            };
            Format::new().set_num_format(pattern)
        })
    }
}

/// The header a person reads: `taxable_value_minor` -> `Taxable value`, `cgst_minor` ->
/// `CGST`, `line_total_inr_minor` -> `Line total (INR)`.
fn header(name: &str) -> String {
    let bare = name.strip_suffix("_minor").unwrap_or(name);
    let bare = bare.strip_suffix("_bps").unwrap_or(bare);
    let words: Vec<String> = bare
        .split('_')
        .enumerate()
        .map(|(index, word)| match word {
            "cgst" | "sgst" | "utgst" | "igst" | "gst" | "hsn" | "inr" | "id" | "b2c" => {
                word.to_ascii_uppercase()
            }
            _ if index == 0 => {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            }
            _ => word.to_owned(),
        })
        .collect();
    words
        .join(" ")
        .replace("SGST UTGST", "SGST/UTGST")
        .replace(" INR", " (INR)")
}

fn write_part(
    worksheet: &mut Worksheet,
    sheet: &Sheet,
    from: usize,
    to: usize,
    formats: &mut Formats,
    progress: &mut dyn FnMut(u64),
) -> Result<(), JobError> {
    let frame = sheet.frame.slice(from as i64, to - from);
    let columns = frame.columns();
    let currency_column = frame
        .get_column_names()
        .iter()
        .position(|name| name.as_str() == "currency");
    let currencies: Vec<Option<String>> = match currency_column {
        Some(index) => columns[index]
            .str()?
            .iter()
            .map(|c| c.map(str::to_owned))
            .collect(),
        None => vec![None; frame.height()],
    };
    let last_col = u16::try_from(columns.len().saturating_sub(1)).unwrap_or(u16::MAX);
    for (index, (column, kind)) in columns.iter().zip(&sheet.kinds).enumerate() {
        let col = u16::try_from(index).unwrap_or(u16::MAX);
        let title = header(column.name().as_str());
        let width = match kind {
            Kind::Text => column_text_width(column, &title),
            Kind::Time => 17.0,
            Kind::Date => 12.0,
            Kind::Money | Kind::Inr => 16.0,
            Kind::Count | Kind::Rate => 10.0,
        };
        worksheet.set_column_width(col, width)?;
        worksheet.write_string_with_format(0, col, &title, &formats.header)?;
    }
    worksheet.set_freeze_panes(1, 0)?;
    let last_row = u32::try_from(frame.height()).unwrap_or(u32::MAX);
    worksheet.autofilter(0, 0, last_row.max(1), last_col)?;

    // Each column as plain values once, then rows in order (constant-memory mode writes a
    // row when the next one starts).
    let values: Vec<Values> = columns
        .iter()
        .zip(&sheet.kinds)
        .map(|(column, kind)| Values::of(column, *kind))
        .collect::<PolarsResult<_>>()?;
    for row in 0..frame.height() {
        let excel_row = u32::try_from(row + 1).unwrap_or(u32::MAX);
        for (index, (value, kind)) in values.iter().zip(&sheet.kinds).enumerate() {
            let col = u16::try_from(index).unwrap_or(u16::MAX);
            match (value, kind) {
                (Values::Text(v), _) => {
                    if let Some(text) = &v[row] {
                        worksheet.write_string_with_format(excel_row, col, text, &formats.text)?;
                    }
                }
                (Values::Int(v), kind) => {
                    let Some(n) = v[row] else { continue };
                    #[allow(clippy::cast_precision_loss)]
                    match kind {
                        Kind::Money | Kind::Inr => {
                            let currency = match kind {
                                Kind::Inr => "INR",
                                _ => currencies[row].as_deref().unwrap_or("INR"),
                            };
                            let format = formats.money(currency);
                            worksheet.write_number_with_format(
                                excel_row,
                                col,
                                n as f64 / 100.0,
                                format,
                            )?;
                        }
                        Kind::Rate => {
                            worksheet.write_number_with_format(
                                excel_row,
                                col,
                                n as f64 / 10_000.0,
                                &formats.rate,
                            )?;
                        }
                        Kind::Date => {
                            let (y, m, d) = IstDate::of_instant(n).ymd();
                            let date = ExcelDateTime::from_ymd(
                                u16::try_from(y).unwrap_or(1900),
                                u8::try_from(m).unwrap_or(1),
                                u8::try_from(d).unwrap_or(1),
                            )?;
                            worksheet.write_datetime_with_format(
                                excel_row,
                                col,
                                &date,
                                &formats.date,
                            )?;
                        }
                        Kind::Time => {
                            let time = ExcelDateTime::from_timestamp(
                                (n + IST_OFFSET_MS).div_euclid(1000),
                            )?;
                            worksheet.write_datetime_with_format(
                                excel_row,
                                col,
                                &time,
                                &formats.time,
                            )?;
                        }
                        Kind::Count | Kind::Text => {
                            worksheet.write_number_with_format(
                                excel_row,
                                col,
                                n as f64,
                                &formats.count,
                            )?;
                        }
                    }
                }
            }
        }
        if row % 10_000 == 9_999 {
            progress(row as u64 + 1);
        }
    }
    progress(frame.height() as u64);
    Ok(())
}

/// One column's cells as plain Rust values.
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Values {
    fn of(column: &Column, kind: Kind) -> PolarsResult<Values> {
        Ok(match kind {
            Kind::Text => Values::Text(
                column
                    .cast(&DataType::String)?
                    .str()?
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
            ),
            _ => Values::Int(column.cast(&DataType::Int64)?.i64()?.iter().collect()),
        })
    }
}

/// Wide enough for the header and the longest of the first thousand values, within reason.
fn column_text_width(column: &Column, title: &str) -> f64 {
    let longest = column
        .str()
        .ok()
        .map(|values| {
            values
                .iter()
                .take(1000)
                .flatten()
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let chars = longest.max(title.chars().count().min(24)) as f64;
    (chars + 2.0).clamp(8.0, 60.0)
}
