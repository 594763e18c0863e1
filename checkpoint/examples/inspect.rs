//! `cargo run --example inspect -- FILE [--json]`: what `yolots inspect` prints.

use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::inspect::Summary;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: inspect FILE [--json]");
        std::process::exit(1);
    };
    let json = args.any(|a| a == "--json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let result = Checkpoint::from_bytes(&bytes).and_then(|c| c.describe());
    match result {
        Ok(description) => {
            let summary = Summary::from(&description);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                print!("{summary}");
            }
        }
        Err(e) => {
            eprintln!("{path}: {e} [{}]", e.code());
            std::process::exit(2);
        }
    }
}
