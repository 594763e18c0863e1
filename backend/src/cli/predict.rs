//! `yolots predict ARGS`: runs `yolots-converter predict ARGS` in place of this process
//! (same arguments, output, signals and exit status), so only the converter loads
//! libtorch and ONNX Runtime. Its options, `--help` included, are the converter's. A
//! model that is not an artifact yolots wrote is a checkpoint the converter will read: it
//! is first read in the upload check's bounded child, as `yolots convert` does.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Parser};
use yolots_protocol::EXIT_REFUSED;

use super::bounded_read::{self, Checked};
use crate::converter;

/// The converter's own command line, read here only to find the model.
#[derive(Debug, Parser)]
#[command(name = "yolots predict")]
struct ParsedArgs {
    #[command(flatten)]
    args: yolots_protocol::cli::PredictArgs,
}

/// The tail of a file that holds a zip archive's central directory (an artifact's lists a
/// few hundred entries).
const DIRECTORY_TAIL: u64 = 1 << 20;

/// Whether the file is an artifact yolots wrote: an ONNX file, or an archive whose
/// central directory names `extra/yolots.json` (a checkpoint has no such entry).
fn is_artifact(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 1];
    if file.read_exact(&mut head).is_ok() && yolots_onnx::read::looks_like_onnx(&head) {
        return true;
    }
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    let read = file
        .seek(SeekFrom::Start(len.saturating_sub(DIRECTORY_TAIL)))
        .and_then(|_| file.take(DIRECTORY_TAIL).read_to_end(&mut tail));
    let name = b"extra/yolots.json";
    read.is_ok() && tail.windows(name.len()).any(|w| w == name)
}

/// Arguments of `yolots predict`, passed on unread.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct PredictArgs {
    /// The converter's arguments (`yolots predict --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Replaces this process with the converter; returns only when that fails, or when the
/// model is a checkpoint its bounded first read refuses (exit 2, one line on stderr).
pub fn run(args: &PredictArgs) -> anyhow::Result<ExitCode> {
    // Arguments clap refuses (or `--help`) go to the converter unread: it says why.
    let argv = std::iter::once(OsString::from("yolots predict")).chain(args.args.iter().cloned());
    if let Ok(parsed) = ParsedArgs::try_parse_from(argv)
        && !is_artifact(&parsed.args.model)
        && let Checked::Refused { message, .. } = bounded_read::check(&parsed.args.model)?
    {
        eprintln!("error: {message}");
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    Err(converter::exec("predict", &args.args))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn artifacts_are_told_from_checkpoints_by_their_metadata_entry() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        // A TorchScript archive: its central directory, at the end, names the metadata.
        let mut archive = b"PK\x03\x04".to_vec();
        archive.extend(std::iter::repeat_n(0u8, 3 << 20));
        archive.extend_from_slice(b"PK\x01\x02model/extra/yolots.json");
        assert!(is_artifact(&write("model.torchscript.pt", &archive)));
        // An ONNX file starts with its IR version field.
        assert!(is_artifact(&write("model.onnx", b"\x08\x08\x12\x06yolots")));
        // A checkpoint archive or a legacy pickle is not an artifact.
        let mut checkpoint = b"PK\x03\x04".to_vec();
        checkpoint.extend_from_slice(b"PK\x01\x02archive/data.pkl");
        assert!(!is_artifact(&write("best.pt", &checkpoint)));
        assert!(!is_artifact(&write("legacy.pt", b"\x80\x02\x8a\x0al")));
        assert!(!is_artifact(&dir.path().join("missing.pt")));
    }
}
