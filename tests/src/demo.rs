//! `shopstream demo` as a child process with a data dir: started, watched (RSS, `/metrics`),
//! stopped with SIGTERM or killed with SIGKILL. The child is the `demo_child` test binary, or
//! the binary named by `SHOPSTREAM_DEMO_BIN` (e.g. a release build) run as
//! `BIN --data-dir DIR --set k=v ... demo`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    /// Every API: the front door.
    pub http: SocketAddr,
    /// The embedded broker's address.
    pub kafka: String,
    pub data_dir: PathBuf,
    /// The child's stderr (its banner and log), kept for failure messages.
    pub log: PathBuf,
}

/// How the demo ended.
#[derive(Debug)]
pub struct Ended {
    pub success: bool,
    /// The end of its stderr.
    pub log_tail: String,
}

impl Demo {
    /// Starts the demo on `data_dir` with every listener on a free loopback port, plus
    /// `settings` (`key=value`, as `--set` takes them), and waits for its banner. `log_name`
    /// names the stderr file beside the data dir, so repeated starts keep their logs apart.
    /// `demo_child` is the test's `env!("CARGO_BIN_EXE_demo_child")` (cargo names it only to
    /// integration tests).
    pub async fn start(
        demo_child: &str,
        data_dir: &Path,
        settings: &[String],
        log_name: &str,
    ) -> Result<Demo> {
        let mut all: Vec<String> = [
            "http.listen=127.0.0.1:0",
            "bus.embedded_listen=127.0.0.1:0",
            "sql.listen=127.0.0.1:0",
        ]
        .map(str::to_owned)
        .to_vec();
        all.extend(settings.iter().cloned());
        let mut command = match std::env::var_os("SHOPSTREAM_DEMO_BIN") {
            Some(binary) => {
                let mut command = Command::new(binary);
                command.arg("--data-dir").arg(data_dir);
                for setting in &all {
                    command.arg("--set").arg(setting);
                }
                command.arg("demo");
                command
            }
            None => {
                let mut command = Command::new(demo_child);
                command.arg(data_dir).args(&all);
                command
            }
        };
        let log = data_dir.with_file_name(format!("{log_name}.log"));
        let mut child = command
            .env(
                "SHOPSTREAM_LOG",
                std::env::var("SHOPSTREAM_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the demo child")?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        let mut file = std::fs::File::create(&log)?;
        let (found, address) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            let mut kafka = String::new();
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::io::Result::ok)
            {
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.trim_start().strip_prefix("kafka broker") {
                    kafka = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
                if let Some(address) = line
                    .trim_start()
                    .strip_prefix("every API")
                    .and_then(|rest| rest.trim().strip_prefix("http://"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|address| address.parse::<SocketAddr>().ok())
                    && let Some(found) = found.take()
                {
                    let _ = found.send((address, kafka.clone()));
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(120), address).await {
            Ok(Ok((http, kafka))) => Ok(Demo {
                child,
                http,
                kafka,
                data_dir: data_dir.to_owned(),
                log,
            }),
            _ => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "the demo printed no banner within 120 s (or exited: {status}); its stderr \
                     ends:\n{}",
                    tail(&log)
                )
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, KiB, from `/proc`.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// The admin key the core wrote on its first start.
    pub fn admin_key(&self) -> Result<String> {
        let path = self.data_dir.join("core").join("admin.key");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// Posts NDJSON `lines` to this demo's collector as the admin; see [`post_ndjson`].
    pub async fn post_events(&self, client: &reqwest::Client, lines: String) -> Result<()> {
        post_ndjson(client, self.http, &self.admin_key()?, lines).await
    }

    /// SIGKILL: no final snapshot, no checkpoint, no clean-shutdown marker.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits (up to `within`) for the clean stop.
    pub async fn stop(mut self, within: Duration) -> Result<Ended> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Ended {
                    success: status.success(),
                    log_tail: tail(&self.log),
                });
            }
            if std::time::Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!(
                    "the demo did not stop within {within:?} of SIGTERM; its stderr ends:\n{}",
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts NDJSON `lines` to the collector at `http` with `key` and checks that every line was
/// accepted. A free function so a spawned load task can post without holding the [`Demo`].
pub async fn post_ndjson(
    client: &reqwest::Client,
    http: SocketAddr,
    key: &str,
    lines: String,
) -> Result<()> {
    let count = lines.lines().count();
    let answer = client
        .post(format!("http://{http}/v1/events"))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await?;
    let status = answer.status();
    let text = answer.text().await?;
    anyhow::ensure!(
        status.is_success(),
        "the collector answered {status}: {text}"
    );
    let answer: serde_json::Value = serde_json::from_str(&text)?;
    anyhow::ensure!(
        answer["accepted"] == count,
        "the collector accepted only part of {count} lines: {text}"
    );
    Ok(())
}

/// The last 40 lines of `log`, before any backtrace (`RUST_BACKTRACE=1` in CI appends one to
/// the error, and the error is what the tests read).
pub fn tail(log: &Path) -> String {
    let text = match std::fs::read(log) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) => format!("(cannot read {}: {error})", log.display()),
    };
    let text = text.split("\nStack backtrace:").next().unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every sample of `name` (any labels) in a Prometheus text exposition.
fn samples<'a>(exposition: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
}

/// The sum of every sample of `name` (any labels).
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    samples(exposition, name).sum()
}

/// The largest sample of `name` (any labels).
pub fn metric_max(exposition: &str, name: &str) -> f64 {
    samples(exposition, name).fold(0.0, f64::max)
}
