//! `yolots-converter runtime`: facts about the libtorch this binary loads, as one JSON
//! line (`{"libtorch":"2.11.0","cuda_devices":1}`), for processes that do not load it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use yolots_converter::RuntimeFacts;

pub fn run() -> anyhow::Result<ExitCode> {
    let facts = RuntimeFacts {
        libtorch: yolots_converter::runtime::libtorch_version(),
        cuda_devices: yolots_converter::runtime::cuda_device_count(),
        test_hooks: yolots_protocol::TEST_HOOKS,
    };
    let line = serde_json::to_string(&facts).context("serialising the runtime facts")?;
    writeln!(std::io::stdout().lock(), "{line}").context("writing the runtime facts")?;
    Ok(ExitCode::SUCCESS)
}
