//! The lakehouse on an S3-compatible store (moto, a local server from PyPI): the manifest's
//! create-only puts refuse a second writer of a version, the sink commits every row once, SQL
//! reads the bucket, and compaction rewrites files there.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use anyhow::Result;
use lakehouse::LakeConfig;
use lakehouse::storage::{S3Config, Storage};
use model::{Table, Topic};
use testkit::lake::{events, expected_rows, wait_committed};
use testkit::tools::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_and_sql_work_on_an_s3_bucket() -> Result<()> {
    let server = tokio::task::spawn_blocking(S3Server::start).await??;
    // moto creates buckets on an unsigned PUT.
    let created = reqwest::Client::new()
        .put(format!("{}/lake", server.endpoint))
        .send()
        .await?;
    assert!(created.status().is_success(), "{}", created.status());
    let s3 = S3Config {
        bucket: "lake".into(),
        prefix: "shopstream/test".into(),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    };
    let storage = Storage::s3(&s3)?;
    let path = storage.path("probe/00000000000000000001.json");
    assert!(storage.create(&path, b"first".to_vec()).await?);
    assert!(
        !storage.create(&path, b"second".to_vec()).await?,
        "a version is created once"
    );
    assert_eq!(storage.get(&path).await?, b"first");

    let bus = testkit::bus("lake-s3")?;
    bus.ensure_topics(&Topic::ALL).await?;
    let config = LakeConfig {
        s3: Some(s3),
        group_id: "lake-s3".into(),
        commit_interval_ms: 300,
        // Small commits, so compaction has files to merge.
        max_buffered_rows: 1_000,
        ..LakeConfig::default()
    };
    let events = events(17, 8_000)?;
    let want = expected_rows(&events);
    testkit::produce_all(&bus.producer()?, &events).await?;
    let sink = testkit::lake::start_sink(&config, &bus);
    wait_committed(&config, &want, Duration::from_secs(90)).await?;
    sink.stop().await?;

    let compacted = lakehouse::maintain::compact(
        &storage,
        Table::Clicks,
        config.encoding(),
        2,
        config.compact_target_bytes,
    )
    .await?;
    assert!(
        compacted.files_before > compacted.files_after,
        "{compacted:?}"
    );
    wait_committed(&config, &want, Duration::from_secs(10)).await?;
    Ok(())
}
