//! What several benches share: a backlog produced to the broker, and `wrk` against the
//! front door.

use std::path::Path;

use anyhow::{Context, Result};
use model::Envelope;

/// Produces `events` in slices of 50,000 in flight, waiting for every acknowledgement.
pub async fn produce(producer: &bus::Producer, events: &[Envelope]) -> Result<()> {
    for slice in events.chunks(50_000) {
        let encoded: Vec<Vec<u8>> = slice.iter().map(model::codec::encode).collect();
        let mut pending = Vec::with_capacity(slice.len());
        for (envelope, payload) in slice.iter().zip(&encoded) {
            pending.push(producer.enqueue(bus::OutRecord {
                topic: envelope.topic(),
                key: envelope.key().as_bytes(),
                payload,
                headers: &[],
            })?);
        }
        for delivered in pending {
            delivered.await?;
        }
    }
    Ok(())
}

/// `wrk` with two threads, `connections` and the Lua `script` against `base` for `seconds`,
/// with the latency distribution: its report.
pub async fn wrk(script: &Path, base: &str, connections: usize, seconds: u64) -> Result<String> {
    let (connections, seconds) = (format!("-c{connections}"), format!("-d{seconds}s"));
    let (script, base) = (script.to_owned(), base.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t2", &connections, &seconds, "--latency", "-s"])
            .arg(&script)
            .arg(&base)
            .output()
    })
    .await?
    .context("running wrk (apt install wrk)")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `list` on the configured front door (so `--set http.per_address_per_second=...` applies:
/// `wrk` and a bench's probes are one client address), on a free port.
pub async fn serve(
    config: &shopstream::config::Config,
    list: runtime::supervisor::StageList,
) -> Result<runtime::supervisor::Running> {
    let front = runtime::http::FrontConfig {
        listen: "127.0.0.1:0".to_owned(),
        ..config.http.clone()
    };
    let listener = runtime::supervisor::bind(&front).await?;
    Ok(runtime::supervisor::spawn(front, listener, list)?)
}
