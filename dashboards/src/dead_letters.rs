//! Dead letters as operators read them: the dashboards follow the `dlq` topic from its first
//! retained record (a reader outside any consumer group, so nothing is taken from anyone) and
//! keep the count by stage and reason, and the latest records with their reason, source and
//! size. Memory is the count table and a fixed number of samples.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bus::{Bus, InRecord};
use model::Topic;
use model::dlq::header;
use tokio_util::sync::CancellationToken;

/// Latest dead letters kept for the page.
const SAMPLES: usize = 20;

/// One dead letter as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub stage: String,
    pub reason: String,
    pub message: String,
    /// `topic[partition]@offset` of the original record.
    pub source: String,
    pub bytes: usize,
}

/// How many dead letters each (stage, reason) has.
pub type Counts = Vec<((String, String), u64)>;

#[derive(Debug, Default)]
struct Book {
    by_stage_and_reason: BTreeMap<(String, String), u64>,
    latest: VecDeque<Sample>,
}

/// What the dashboards know of the `dlq` topic.
#[derive(Debug, Default)]
pub struct DeadLetters {
    book: Mutex<Book>,
}

fn header_text(record: &InRecord, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}

impl DeadLetters {
    fn add(&self, record: &InRecord) {
        let sample = Sample {
            at_ms: record.timestamp_ms.unwrap_or(0),
            stage: header_text(record, header::STAGE),
            reason: header_text(record, header::REASON),
            message: header_text(record, header::MESSAGE),
            source: format!(
                "{}[{}]@{}",
                header_text(record, header::SOURCE_TOPIC),
                header_text(record, header::SOURCE_PARTITION),
                header_text(record, header::SOURCE_OFFSET)
            ),
            bytes: record.payload.as_ref().map_or(0, Vec::len),
        };
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        *book
            .by_stage_and_reason
            .entry((sample.stage.clone(), sample.reason.clone()))
            .or_default() += 1;
        if book.latest.len() == SAMPLES {
            book.latest.pop_front();
        }
        book.latest.push_back(sample);
    }

    fn clear(&self) {
        *self.book.lock().unwrap_or_else(PoisonError::into_inner) = Book::default();
    }

    /// `((stage, reason), count)` and the latest records, newest first.
    pub fn snapshot(&self) -> (Counts, Vec<Sample>) {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        (
            book.by_stage_and_reason
                .iter()
                .map(|(key, n)| (key.clone(), *n))
                .collect(),
            book.latest.iter().rev().cloned().collect(),
        )
    }

    /// Follows the `dlq` topic until `shutdown`. A broken connection is logged and the topic
    /// read again from its start (the counts with it), a second later: the page is
    /// informational, and the stage must not take the process down with the broker.
    pub async fn follow(self: Arc<Self>, bus: Arc<Bus>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            self.clear();
            let outcome = async {
                let reader = bus.reader(&[Topic::Dlq]).await?;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok::<(), bus::BusError>(()),
                        record = reader.recv() => self.add(&record?),
                    }
                }
            }
            .await;
            if let Err(error) = outcome {
                tracing::warn!(
                    "the dashboards stopped reading dead letters ({error}); reading again in 1 s"
                );
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stage: &str, reason: &str, offset: i64) -> InRecord {
        InRecord {
            topic: Topic::Dlq,
            topic_name: "dlq".into(),
            partition: 0,
            offset,
            key: None,
            payload: Some(vec![0; 10]),
            headers: vec![
                (header::STAGE.into(), stage.as_bytes().to_vec()),
                (header::REASON.into(), reason.as_bytes().to_vec()),
                (header::MESSAGE.into(), b"why".to_vec()),
                (header::SOURCE_TOPIC.into(), b"clicks".to_vec()),
                (header::SOURCE_PARTITION.into(), b"2".to_vec()),
                (
                    header::SOURCE_OFFSET.into(),
                    offset.to_string().into_bytes(),
                ),
            ],
            timestamp_ms: Some(offset),
        }
    }

    #[test]
    fn counts_by_stage_and_reason_and_keeps_the_latest_few() {
        let letters = DeadLetters::default();
        for offset in 0..30 {
            let reason = if offset % 3 == 0 {
                "late"
            } else {
                "malformed_json"
            };
            letters.add(&record("trending", reason, offset));
        }
        letters.add(&record("lakehouse", "late", 30));
        let (counts, latest) = letters.snapshot();
        assert_eq!(
            counts,
            vec![
                (("lakehouse".into(), "late".into()), 1),
                (("trending".into(), "late".into()), 10),
                (("trending".into(), "malformed_json".into()), 20),
            ]
        );
        assert_eq!(latest.len(), SAMPLES);
        assert_eq!(latest[0].stage, "lakehouse");
        assert_eq!(latest[1].source, "clicks[2]@29");
        assert_eq!(latest[1].bytes, 10);
    }
}
