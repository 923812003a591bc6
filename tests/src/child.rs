//! The child processes the crash tests SIGKILL: how a child joins the parent's broker, and
//! how the parent starts one.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Result;
use bus::{Bus, BusConfig};

/// The bus a killed and restarted child connects with: a short session, and a static member
/// id (`instance`), so a restarted child takes its partitions back at once instead of
/// waiting for the killed one's session to time out.
pub fn bus(
    bootstrap: String,
    prefix: String,
    instance: &str,
    session_timeout_ms: &str,
) -> Result<Bus> {
    Ok(Bus::connect(BusConfig {
        bootstrap_servers: Some(bootstrap),
        topic_prefix: prefix,
        properties: [
            (
                "session.timeout.ms".to_owned(),
                session_timeout_ms.to_owned(),
            ),
            ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
            ("group.instance.id".to_owned(), instance.to_owned()),
        ]
        .into_iter()
        .collect(),
        ..BusConfig::default()
    })?)
}

/// `program` against `bus`'s broker and topic prefix, keeping its state in `dir` (the
/// children's arguments: BOOTSTRAP TOPIC_PREFIX DIR); its stderr is the test's.
pub fn command(program: &str, bus: &Bus, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .arg(bus.bootstrap_servers())
        .arg(&bus.config().topic_prefix)
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}
