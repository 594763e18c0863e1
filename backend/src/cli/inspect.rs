//! `yolots inspect FILE [--json]`: what a checkpoint holds, read safely; for an ONNX file
//! (`.onnx`), its inputs, outputs and the metadata yolots wrote into it.
//!
//! A checkpoint is read first in the upload check's bounded child
//! ([`super::bounded_read`]), then here only when it passed.
//!
//! Exit status: 0 for a supported model, 2 when the file is not one (with the reason),
//! 1 on an internal failure (for example the file cannot be opened).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use yolots_checkpoint::Checkpoint;
use yolots_checkpoint::inspect::Summary;
use yolots_protocol::ErrorCode;

use super::bounded_read::{self, Checked};

/// Arguments of `yolots inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The checkpoint (`.pt`) to read, or an ONNX file (`.onnx`) yolots wrote.
    pub file: PathBuf,
    /// Print the documented JSON summary instead of the readable one.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    // Output piped into `head` and closed early ends the process quietly, as it ends `cat`,
    // instead of a panic on the next print.
    // SAFETY: restoring the default action of one signal; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(error) = std::fs::metadata(&args.file) {
        anyhow::bail!("cannot open {}: {error}", args.file.display());
    }
    if is_onnx(&args.file) {
        return inspect_onnx(args);
    }
    // Read first where a reader bug cannot take the machine; only a file that passed is
    // read here.
    if let Checked::Refused { code, message } = bounded_read::check(&args.file)? {
        return refused(args, code, &message);
    }
    let described = Checkpoint::open(&args.file).and_then(|checkpoint| checkpoint.describe());
    match described {
        Ok(description) => {
            let summary = Summary::from(&description);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => refused(args, error.code(), &error.to_string()),
    }
}

/// Prints why the file is not a supported model (as JSON too with `--json`): exit 2.
fn refused(args: &InspectArgs, code: ErrorCode, message: &str) -> anyhow::Result<ExitCode> {
    if args.json {
        let problem = serde_json::json!({
            "supported": false,
            "code": code,
            "message": message,
        });
        println!("{}", serde_json::to_string_pretty(&problem)?);
    }
    eprintln!(
        "{}: not a supported YOLOv7 checkpoint: {message}",
        args.file.display()
    );
    Ok(ExitCode::from(2))
}

/// An `.onnx` name, or a file that starts like one while not starting like a checkpoint
/// (a zip archive or a pickle).
fn is_onnx(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return true;
    }
    let mut head = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| yolots_onnx::read::looks_like_onnx(&head))
}

fn inspect_onnx(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let summary = match yolots_onnx::read::summary(&bytes) {
        Ok(summary) => summary,
        Err(error) => {
            if args.json {
                let problem = serde_json::json!({
                    "supported": false,
                    "code": ErrorCode::NotAnArchive,
                    "message": error.to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&problem)?);
            }
            eprintln!("{}: {error}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    drop(bytes);
    let artifact: Option<serde_json::Value> = summary
        .metadata("yolots.json")
        .and_then(|text| serde_json::from_str(text).ok());
    if args.json {
        let values = |vs: &[yolots_onnx::read::ValueSummary]| -> Vec<serde_json::Value> {
            vs.iter()
                .map(|v| serde_json::json!({"name": v.name, "type": v.elem_type, "shape": v.dims}))
                .collect()
        };
        let metadata: serde_json::Map<String, serde_json::Value> = summary
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let out = serde_json::json!({
            "supported": true,
            "format": "onnx",
            "ir_version": summary.ir_version,
            "opsets": summary.opsets.iter().map(|(d, v)| serde_json::json!({"domain": d, "version": v})).collect::<Vec<_>>(),
            "producer": summary.producer,
            "inputs": values(&summary.inputs),
            "outputs": values(&summary.outputs),
            "nodes": summary.nodes,
            "initializers": summary.initializers,
            "parameters": summary.initializer_elements,
            "metadata_props": metadata,
            "yolots": artifact,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opsets: Vec<String> = summary
        .opsets
        .iter()
        .map(|(d, v)| format!("{}{v}", if d.is_empty() { "ai.onnx " } else { d }))
        .collect();
    println!(
        "format       ONNX (IR {}, opset {})",
        summary.ir_version,
        opsets.join(", ")
    );
    println!("producer     {}", summary.producer);
    for input in &summary.inputs {
        println!("input        {input}");
    }
    for output in &summary.outputs {
        println!("output       {output}");
    }
    println!(
        "graph        {} nodes, {} initializers, {} parameters",
        summary.nodes, summary.initializers, summary.initializer_elements
    );
    match &artifact {
        Some(meta) => {
            let field = |k: &str| meta.get(k).map(|v| v.to_string()).unwrap_or_default();
            println!("task         {}", field("task").trim_matches('"'));
            println!("classes      {} {}", field("nc"), field("names"));
            println!("strides      {}", field("strides"));
            println!("anchors      {}", field("anchors"));
            println!("head         {}", field("head").trim_matches('"'));
            println!("precision    {}", field("precision").trim_matches('"'));
            println!("input spec   {}", field("input"));
            println!(
                "source       {} (sha256 {})",
                field("source_file").trim_matches('"'),
                field("source_sha256").trim_matches('"')
            );
            println!(
                "written by   yolots {}",
                field("yolots_version").trim_matches('"')
            );
        }
        None => {
            for (key, value) in &summary.metadata {
                println!("metadata     {key} = {value}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
