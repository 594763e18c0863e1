//! The `yolots` command: CLI, REST service and workers.

use std::process::ExitCode;

fn main() -> ExitCode {
    yolots::cli::main()
}
