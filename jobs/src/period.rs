//! A calendar month in IST, as finance asks for it (`2026-11`), and the Indian financial year
//! it falls in (April to March), which invoice numbers restart with.

use std::fmt;

use model::calendar::IstDate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// `YYYY-MM`, from 2000 to 2099.
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || format!("period {text:?} is not a month: use YYYY-MM, e.g. 2026-11");
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        if !(2000..=2099).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }

    /// The month containing `utc_ms` in IST.
    pub fn of_instant(utc_ms: i64) -> Period {
        let (year, month, _) = IstDate::of_instant(utc_ms).ymd();
        Period { year, month }
    }

    fn first_day(self) -> IstDate {
        IstDate::from_ymd(self.year, self.month, 1).unwrap_or_else(|| IstDate::of_instant(0))
    }

    /// IST midnight of the first day, UTC ms.
    pub fn start_ms(self) -> i64 {
        self.first_day().start_utc_ms()
    }

    /// IST midnight of the next month's first day, UTC ms (exclusive end).
    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }

    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The year the financial year containing this month began in (April).
    pub fn financial_year(self) -> i32 {
        if self.month >= 4 {
            self.year
        } else {
            self.year - 1
        }
    }

    /// IST midnight of 1 April that began this month's financial year, UTC ms.
    pub fn financial_year_start_ms(self) -> i64 {
        IstDate::from_ymd(self.financial_year(), 4, 1).map_or(0, IstDate::start_utc_ms)
    }

    /// `2026-27`.
    pub fn financial_year_label(self) -> String {
        let year = self.financial_year();
        format!("{year}-{:02}", (year + 1) % 100)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:02}", self.year, self.month)
    }
}
