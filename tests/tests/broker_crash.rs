//! The embedded broker killed after its last snapshot loses what it acknowledged since; the
//! records' offsets are then handed out again. A stage that already stored those records
//! would skip the new ones as seen. Here: a snapshot, more records, the lakehouse sink commits
//! them all, the broker "dies" without its final save; on restart the binary's check finds
//! the sink ahead of the log and refuses to start anything, naming the stage, the partition,
//! both offsets and the way out, and keeps refusing until someone takes it; after that, a
//! clean shutdown restarts without complaint.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use model::Topic;
use shopstream::config::Config;
use testkit::lake::{events, expected_rows, wait_committed};

fn config(data_dir: &std::path::Path) -> Result<Config> {
    let settings = [
        ("data_dir", format!("{:?}", data_dir.display().to_string())),
        ("bus.embedded_listen", "\"127.0.0.1:0\"".to_owned()),
        // No autosave during the test: the snapshots are the test's own.
        ("bus.embedded_autosave_ms", "3600000".to_owned()),
        ("lakehouse.commit_interval_ms", "300".to_owned()),
    ]
    .map(|(key, value)| (key.to_owned(), value));
    Config::load(None, &settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_ahead_of_a_broker_that_lost_records_stops_the_start_with_the_way_out() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = config(&data)?;
    let bus = Arc::new(bus::Bus::connect(config.bus.clone())?);
    assert!(
        bus.broker_unclean_start()
            .is_some_and(|ends| ends.is_empty()),
        "a first start has nothing to vouch for it, and an empty log"
    );
    bus.confirm_start();
    bus.ensure_topics(&Topic::ALL).await?;
    let all = events(41, 3_000)?;
    let (before, after) = all.split_at(2_000);
    let producer = bus.producer()?;
    testkit::produce_all(&producer, before).await?;
    // An autosave: the snapshot holds the first 2,000 records (no clean-shutdown marker).
    assert!(bus.save());
    std::fs::remove_file(data.join("broker/clean-shutdown"))?;
    testkit::produce_all(&producer, after).await?;
    drop(producer);

    let sink = testkit::lake::start_sink(&config.lakehouse, &bus);
    wait_committed(
        &config.lakehouse,
        &expected_rows(&all),
        Duration::from_secs(90),
    )
    .await?;
    sink.stop().await?;
    // The kill: no final save, so the 1,000 records after the snapshot are gone.
    std::mem::forget(bus);

    let config = self::config(&data)?;
    let restarted = bus::Bus::connect(config.bus.clone())?;
    let ends = restarted
        .broker_unclean_start()
        .expect("a run that ended without its final save is noticed")
        .clone();
    let refused = shopstream::recovery::check_positions(&config, &restarted, &ends)
        .await
        .expect_err("the sink is ahead of the log it came back with");
    let message = format!("{refused:#}");
    for says in [
        "lost records it had acknowledged",
        "lakehouse sink",
        "nothing has been skipped",
        "start from an empty data dir",
        &data.join("lake").display().to_string(),
    ] {
        assert!(message.contains(says), "{says:?} missing from:\n{message}");
    }
    let orders = restarted.topic_name(Topic::Orders);
    let line = message
        .lines()
        .find(|line| line.contains(&format!("{orders} partition")))
        .unwrap_or_else(|| panic!("no line names {orders}:\n{message}"));
    let end = ends
        .iter()
        .filter(|((topic, _), _)| *topic == orders)
        .map(|(_, end)| *end)
        .collect::<Vec<_>>();
    assert!(
        end.iter()
            .any(|end| line.ends_with(&format!("the log now ends at {end}"))),
        "{line} vs ends {end:?}"
    );

    // Stopping there (the refused run's own shutdown saves) leaves the next start just as
    // suspicious: the refusal holds until someone acts.
    assert!(restarted.save());
    drop(restarted);
    let config = self::config(&data)?;
    let refused_again = bus::Bus::connect(config.bus.clone())?;
    let ends = refused_again.broker_unclean_start().unwrap().clone();
    assert!(
        shopstream::recovery::check_positions(&config, &refused_again, &ends)
            .await
            .is_err()
    );
    drop(refused_again);

    // The way out the message gives: the lake moved aside, the check passes, and after a
    // clean stop the marker vouches for the snapshot.
    std::fs::rename(data.join("lake"), dir.path().join("lake-before-the-crash"))?;
    let config = self::config(&data)?;
    let recovered = bus::Bus::connect(config.bus.clone())?;
    let ends = recovered.broker_unclean_start().unwrap().clone();
    shopstream::recovery::check_positions(&config, &recovered, &ends).await?;
    recovered.confirm_start();
    assert!(recovered.save());
    drop(recovered);
    let again = bus::Bus::connect(self::config(&data)?.bus)?;
    assert!(again.broker_unclean_start().is_none());
    Ok(())
}
