//! `shopstream demo` for the tests that watch it from outside (`soak.rs`,
//! `demo_sigkill.rs`): `demo_child DATA_DIR [key=value ...]`, the settings as `--set` takes
//! them. The same code path as the binary's `demo`, without building the binary.

use anyhow::{Context, Result};
use shopstream::app::{self, Role};
use shopstream::config::Config;

fn main() -> Result<()> {
    shopstream::init_logging();
    let mut args = std::env::args().skip(1);
    let data_dir = args.next().context(
        "usage: demo_child DATA_DIR [key=value ...] (started by the soak and crash tests)",
    )?;
    let mut settings = vec![("data_dir".to_owned(), format!("{data_dir:?}"))];
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .with_context(|| format!("{arg:?} is not key=value"))?;
        settings.push((key.to_owned(), value.to_owned()));
    }
    let config = Config::load(None, &settings)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(app::run(config, Role::Demo))
}
