//! schemathesis (PyPI) against the running demo's `/v1/openapi.json`, with the admin key:
//! generated requests for every operation, from the documented examples, the schema's
//! boundaries and random data. No answer may be a 5xx, carry a status the document does not
//! list, or differ from the documented shape (every 4xx is the one error body). The venv is
//! made once per machine. `SHOPSTREAM_API_FUZZ_EXAMPLES` sets the examples per operation
//! (default 20).

use std::process::Command;

use anyhow::{Context, Result, ensure};
use testkit::demo::Demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_5xx_and_only_documented_answers() -> Result<()> {
    let schemathesis = testkit::tools::schemathesis()?;
    let examples = std::env::var("SHOPSTREAM_API_FUZZ_EXAMPLES").unwrap_or_else(|_| "20".into());
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let demo = Demo::start(
        env!("CARGO_BIN_EXE_demo_child"),
        &data,
        // Every generated request is its own key's; the rate limit would answer most 429.
        &[
            "core.rate_limit.per_second=100000".to_owned(),
            "core.rate_limit.burst=100000".to_owned(),
            "http.per_address_per_second=100000".to_owned(),
            "http.per_address_burst=100000".to_owned(),
        ],
        "schemathesis",
    )
    .await?;
    let key = demo.admin_key()?;
    // Schemathesis keeps a cache in its working directory; not in the checkout.
    let workdir = dir.path().to_owned();
    let schema = format!("http://{}/v1/openapi.json", demo.http);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&schemathesis)
            .args(["run", &schema])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            ])
            .args(["--max-examples", &examples])
            .arg("--generation-deterministic")
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--request-timeout", "30"])
            .env("NO_COLOR", "1")
            .current_dir(&workdir)
            .output()
            .with_context(|| format!("running {}", schemathesis.display()))
    })
    .await??;
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    ensure!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    let ended = demo.stop(std::time::Duration::from_secs(120)).await?;
    ensure!(
        ended.success,
        "the demo did not stop cleanly:\n{}",
        ended.log_tail
    );
    Ok(())
}
