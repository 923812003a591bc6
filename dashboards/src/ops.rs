//! The operators' view, read from the process's own metrics (what `/metrics` serves): consumer
//! lag per stage and partition, records per second per stage (from the difference between
//! this sample and the previous one), dead letters, checkpoints, checkpoint age and watermark
//! age per stage,
//! the embedded broker's snapshots, the outbox, lakehouse, search and recommendation series,
//! and the SQL endpoint's (sessions per user, logins, refusals, statements, memory held).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::i18n::{self, Lang};
use crate::views::{Table, head};

/// One sample line of the OpenMetrics text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

fn label<'a>(sample: &'a Sample, key: &str) -> &'a str {
    sample.labels.get(key).map_or("", String::as_str)
}

/// Keeps the previous sample of the record counters, so each view shows a rate.
#[derive(Debug, Default)]
pub struct Rates {
    previous: Mutex<Option<(Instant, BTreeMap<String, f64>)>>,
}

/// What the operations page shows.
#[derive(Debug, Clone)]
pub struct Ops {
    pub tables: Vec<Table>,
}

impl Rates {
    /// The view of `exposition`, read at `now_ms` (`Instant` `at`).
    pub fn view(&self, lang: Lang, exposition: &str, now_ms: i64, at: Instant) -> Ops {
        let samples = parse(exposition);
        let mut lag = Table {
            caption: lang.t("consumer_lag").to_owned(),
            head: head(lang, &["stage", "topic", "partition", "records"]),
            rows: Vec::new(),
        };
        let mut counters: BTreeMap<String, f64> = BTreeMap::new();
        let mut per_job: BTreeMap<String, BTreeMap<&str, f64>> = BTreeMap::new();
        let mut broker = Vec::new();
        let mut pipeline = Vec::new();
        let mut sql = Vec::new();
        for sample in &samples {
            let job = label(sample, "job").to_owned();
            match sample.name.as_str() {
                "shopstream_consumer_lag_records" => lag.rows.push(vec![
                    job,
                    label(sample, "topic").to_owned(),
                    label(sample, "partition").to_owned(),
                    i18n::count(sample.value.max(0.0) as u64),
                ]),
                "shopstream_events_in_total" | "shopstream_events_out_total" => {
                    counters.insert(format!("{}/{job}", sample.name), sample.value);
                }
                "shopstream_dead_letters_total" => {
                    per_job
                        .entry(job)
                        .or_default()
                        .insert("dead_letters", sample.value);
                }
                "shopstream_checkpoints_total" => {
                    per_job
                        .entry(job)
                        .or_default()
                        .insert("checkpoints", sample.value);
                }
                "shopstream_checkpoint_last_ms" if sample.value > 0.0 => {
                    let age = (now_ms as f64 - sample.value) / 1_000.0;
                    per_job
                        .entry(job)
                        .or_default()
                        .insert("checkpoint_age", age);
                }
                "shopstream_watermark_ms" if sample.value > 0.0 => {
                    let age = (now_ms as f64 - sample.value) / 1_000.0;
                    per_job.entry(job).or_default().insert("watermark_age", age);
                }
                name if name.starts_with("shopstream_broker_") => {
                    broker.push(vec![name.to_owned(), format_value(sample.value)]);
                }
                // Sessions per user carry the user in the job label (`sql:<user>`).
                name if name.starts_with("shopstream_sql_") => {
                    let series = match label(sample, "job") {
                        "sql" | "" => name.to_owned(),
                        job => format!("{name} ({job})"),
                    };
                    sql.push(vec![series, format_value(sample.value)]);
                }
                name if PIPELINE.iter().any(|prefix| name.starts_with(prefix)) => {
                    let series = match label(sample, "job") {
                        "" => name.to_owned(),
                        job => format!("{name} ({job})"),
                    };
                    pipeline.push(vec![series, format_value(sample.value)]);
                }
                _ => {}
            }
        }
        let rates = {
            let mut previous = self.previous.lock().unwrap_or_else(PoisonError::into_inner);
            let rates: BTreeMap<String, f64> = match previous.as_ref() {
                Some((then, before)) if at > *then => {
                    let seconds = at.duration_since(*then).as_secs_f64();
                    counters
                        .iter()
                        .map(|(key, now)| {
                            let was = before.get(key).copied().unwrap_or(*now);
                            (key.clone(), ((now - was) / seconds).max(0.0))
                        })
                        .collect()
                }
                _ => BTreeMap::new(),
            };
            *previous = Some((at, counters.clone()));
            rates
        };
        // Stage, topic, then partition in numeric order.
        lag.rows.sort_by(|a, b| {
            (&a[0], &a[1], a[2].parse::<i64>().unwrap_or(0)).cmp(&(
                &b[0],
                &b[1],
                b[2].parse::<i64>().unwrap_or(0),
            ))
        });
        let mut flow = Table {
            caption: lang.t("events_per_second").to_owned(),
            head: head(
                lang,
                &[
                    "stage",
                    "events_in",
                    "events_out",
                    "dead_letters",
                    "checkpoints",
                    "checkpoint_age",
                    "watermark_age",
                ],
            ),
            rows: Vec::new(),
        };
        let mut jobs: Vec<String> = counters
            .keys()
            .filter_map(|key| key.split_once('/').map(|(_, job)| job.to_owned()))
            .chain(per_job.keys().cloned())
            .collect();
        jobs.sort();
        jobs.dedup();
        for job in jobs {
            let rate = |name: &str| {
                rates
                    .get(&format!("{name}/{job}"))
                    .map_or_else(|| "–".to_owned(), |r| format!("{r:.1}"))
            };
            let of = |what: &str| per_job.get(&job).and_then(|m| m.get(what)).copied();
            flow.rows.push(vec![
                job.clone(),
                rate("shopstream_events_in_total"),
                rate("shopstream_events_out_total"),
                of("dead_letters").map_or_else(String::new, |n| i18n::count(n as u64)),
                of("checkpoints").map_or_else(String::new, |n| i18n::count(n as u64)),
                of("checkpoint_age").map_or_else(String::new, |s| format!("{s:.0} s")),
                of("watermark_age").map_or_else(String::new, |s| format!("{s:.0} s")),
            ]);
        }
        let two_columns = |key: &str, rows: Vec<Vec<String>>| Table {
            caption: lang.t(key).to_owned(),
            head: vec![lang.t("metric").to_owned(), lang.t("value").to_owned()],
            rows,
        };
        Ops {
            tables: vec![
                flow,
                lag,
                two_columns("broker", broker),
                two_columns("pipeline", pipeline),
                two_columns("sql_endpoint", sql),
            ],
        }
    }
}

/// The dead letters by stage and reason, and the latest ones.
pub fn dead_letters(
    lang: Lang,
    counts: &crate::dead_letters::Counts,
    latest: &[crate::dead_letters::Sample],
) -> [Table; 2] {
    [
        Table {
            caption: lang.t("dead_letters_by_reason").to_owned(),
            head: head(lang, &["stage", "reason", "count"]),
            rows: counts
                .iter()
                .map(|((stage, reason), n)| vec![stage.clone(), reason.clone(), i18n::count(*n)])
                .collect(),
        },
        Table {
            caption: lang.t("latest_dead_letters").to_owned(),
            head: head(
                lang,
                &["when", "stage", "reason", "message", "source", "bytes"],
            ),
            rows: latest
                .iter()
                .map(|sample| {
                    vec![
                        i18n::date_time(lang, sample.at_ms),
                        sample.stage.clone(),
                        sample.reason.clone(),
                        sample.message.chars().take(200).collect(),
                        sample.source.clone(),
                        i18n::count(sample.bytes as u64),
                    ]
                })
                .collect(),
        },
    ]
}

/// The stages' own series shown beside the stream jobs'.
const PIPELINE: &[&str] = &[
    "shopstream_outbox_",
    "shopstream_lake_",
    "shopstream_search_",
    "shopstream_recommend_",
];

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        i18n::count(value.abs() as u64)
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const FIRST: &str = "# HELP x\n\
        shopstream_events_in_total{job=\"trending\"} 100\n\
        shopstream_consumer_lag_records{job=\"trending\",topic=\"clicks\",partition=\"2\"} 7\n\
        shopstream_dead_letters_total{job=\"trending\"} 3\n\
        shopstream_watermark_ms{job=\"trending\"} 1000\n\
        shopstream_checkpoint_last_ms{job=\"trending\"} 9000\n\
        shopstream_broker_snapshot_saves_total 4\n\
        shopstream_sql_sessions{job=\"sql:analyst\"} 2\n\
        shopstream_sql_logins_total{job=\"sql\"} 5\n";

    #[test]
    fn the_view_shows_lag_rates_and_ages_per_stage() {
        let rates = Rates::default();
        let t0 = Instant::now();
        let first = rates.view(Lang::En, FIRST, 11_000, t0);
        assert_eq!(
            first.tables[1].rows,
            vec![vec!["trending", "clicks", "2", "7"]]
        );
        assert_eq!(
            first.tables[0].rows[0][1], "–",
            "no rate before a second sample"
        );
        assert_eq!(first.tables[0].rows[0][3], "3");
        assert_eq!(first.tables[0].rows[0][5], "2 s");
        assert_eq!(first.tables[0].rows[0][6], "10 s");
        assert_eq!(first.tables[2].rows[0][1], "4");
        assert_eq!(
            first.tables[4].rows,
            [
                ["shopstream_sql_sessions (sql:analyst)", "2"],
                ["shopstream_sql_logins_total", "5"]
            ]
        );
        let second = FIRST.replace("} 100", "} 150");
        let later = rates.view(Lang::En, &second, 12_000, t0 + Duration::from_secs(2));
        assert_eq!(later.tables[0].rows[0][1], "25.0");
        for table in later.tables {
            for row in &table.rows {
                assert_eq!(row.len(), table.head.len(), "{}: {row:?}", table.caption);
            }
            assert!(table.head.iter().all(|h| h != "?"), "{:?}", table.head);
        }
    }
}
