//! The crate graph is the architecture (ARCHITECTURE.md): this reads `cargo metadata` and
//! fails on any edge the architecture forbids, naming it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// Stage crates meet only at topics, tables and small traits; none imports another.
const STAGES: &[&str] = &[
    "ingest",
    "streams",
    "lakehouse",
    "jobs",
    "search",
    "recommend",
    "dashboards",
];

/// Each outside engine lives in one crate (plus the binary and the tests, which compose and
/// check).
const ENGINES: &[(&str, &[&str])] = &[
    ("rdkafka", &["bus"]),
    ("noida-db", &["bus"]),
    ("sqlx", &["ingest"]),
    ("datafusion", &["lakehouse"]),
    ("datafusion-postgres", &["lakehouse"]),
    ("object_store", &["lakehouse"]),
    ("tantivy", &["search"]),
    ("arroy", &["recommend"]),
    ("heed", &["recommend"]),
    ("polars", &["jobs"]),
    ("hyper", &["runtime"]),
    ("governor", &["runtime"]),
];

/// A dependency: its name, and its kind (`None` for a normal one, else `dev` or `build`).
type Dependency = (String, Option<String>);

/// Workspace crates' dependencies, by crate.
fn graph() -> Result<BTreeMap<String, Vec<Dependency>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .context("running cargo metadata")?;
    ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout)?;
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        let deps = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or_default().to_owned(),
                    d["kind"].as_str().map(str::to_owned),
                )
            })
            .collect();
        graph.insert(name, deps);
    }
    Ok(graph)
}

#[test]
fn the_crate_graph_points_one_way() -> Result<()> {
    let graph = graph()?;
    let ours: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    for required in ["model", "bus", "runtime", "traffic", "shopstream", "tests"]
        .iter()
        .chain(STAGES)
    {
        ensure!(ours.contains(required), "crate {required} is missing");
    }
    let mut forbidden = Vec::new();
    for (krate, deps) in &graph {
        for (dep, kind) in deps {
            let normal = kind.is_none();
            let internal = ours.contains(dep.as_str());
            let allowed_internal: &[&str] = match krate.as_str() {
                "model" => &[],
                "bus" | "traffic" => &["model"],
                // The consumer driver runs on the bus; the bus knows nothing of the runtime.
                "runtime" => &["model", "bus"],
                stage if STAGES.contains(&stage) => {
                    if normal {
                        &["model", "bus", "runtime"]
                    } else {
                        &["model", "bus", "runtime", "traffic"]
                    }
                }
                _ => continue,
            };
            if internal && !allowed_internal.contains(&dep.as_str()) {
                forbidden.push(format!("{krate} -> {dep}"));
            }
            if let Some((_, owners)) = ENGINES.iter().find(|(engine, _)| engine == dep)
                && !owners.contains(&krate.as_str())
            {
                forbidden.push(format!(
                    "{krate} -> {dep} (the engine belongs to {owners:?})"
                ));
            }
            if dep == "anyhow" && normal {
                forbidden.push(format!(
                    "{krate} -> anyhow (library crates have thiserror enums)"
                ));
            }
        }
    }
    ensure!(
        forbidden.is_empty(),
        "edges the architecture forbids:\n{}",
        forbidden.join("\n")
    );
    Ok(())
}
