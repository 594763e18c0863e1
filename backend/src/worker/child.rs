//! One conversion in a child process: `yolots-converter run`, the converting binary (the
//! only one that loads libtorch).
//!
//! The child reads its `ConvertRequest` as one JSON message on stdin and reports
//! `ConverterLine`s on stdout (progress, then a result or an error); its
//! stderr is kept (the tail) to explain a crash. It runs in a process group of its own (a
//! Ctrl-C at the terminal reaches the worker, which decides) and dies with its worker
//! (`PR_SET_PDEATHSIG`), so a killed worker leaves no conversion running. Whatever the
//! child does — abort inside libtorch, run out of memory, hang — only the child ends, and
//! its memory goes back to the system with it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use yolots_protocol::{ConvertRequest, ConverterLine, DeviceChoice, TestFault};

use crate::model::JobOptions;

/// What to convert and how.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub exe: PathBuf,
    pub input: PathBuf,
    /// The upload's name, which the report names the source by (the stored file has a
    /// name of the store's).
    pub source_name: String,
    pub output: PathBuf,
    pub report: PathBuf,
    pub options: JobOptions,
    /// The device the conversion runs on (resolved by the worker).
    pub device: DeviceChoice,
    /// Exactly this many timed runs; `None`: the converter's time budget.
    pub latency_runs: Option<usize>,
    pub test_fault: Option<TestFault>,
    /// libtorch's thread count in the child (`OMP_NUM_THREADS`), if capped.
    pub cpu_threads: Option<usize>,
}

impl ChildSpec {
    /// The conversion request the child reads on stdin.
    pub fn request(&self) -> ConvertRequest {
        let o = &self.options;
        let mut request = ConvertRequest::new(&self.input, &self.output);
        request.format = o.format;
        request.mode = o.mode;
        request.head = o.head;
        request.precision = o.precision;
        request.fuse = o.fuse;
        request.optimize = o.optimize;
        request.img_size = o.img_size;
        request.device = self.device;
        request.conf = o.conf;
        request.iou = o.iou;
        request.max_det = o.max_det;
        request.report = Some(self.report.clone());
        request.source_name = Some(self.source_name.clone());
        request.test_fault = self.test_fault;
        if let Some(runs) = self.latency_runs {
            // Exactly this many, as `--latency-runs N` alone asks.
            request.latency_runs = runs;
            request.latency_budget_s = None;
        }
        request
    }
}

/// A running conversion.
pub struct ConversionChild {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

/// How much of the child's stderr is kept.
const STDERR_TAIL: usize = 4096;

impl ConversionChild {
    /// Starts the child.
    pub async fn spawn(spec: &ChildSpec) -> std::io::Result<Self> {
        let mut command = Command::new(&spec.exe);
        let request = serde_json::to_vec(&spec.request()).map_err(std::io::Error::other)?;
        command
            .arg("run")
            .env("RUST_LOG", "warn")
            .env_remove("YOLOTS_LOG_FORMAT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(threads) = spec.cpu_threads {
            // Read by libtorch when it starts its thread pool.
            command.env("OMP_NUM_THREADS", threads.to_string());
        }
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(die_with_parent);
        }
        let mut child = command.spawn()?;
        // The request is small (well under a pipe's buffer): written at once, then closed so
        // the child reads to the end.
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the child has no stdin"))?;
        stdin.write_all(&request).await?;
        drop(stdin);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the child has no stdout"))?;
        let stderr = child.stderr.take().map(|mut stderr| {
            tokio::spawn(async move {
                let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL);
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.extend(buf.iter().take(n));
                    while tail.len() > STDERR_TAIL {
                        tail.pop_front();
                    }
                }
                String::from_utf8_lossy(&tail.into_iter().collect::<Vec<u8>>()).into_owned()
            })
        });
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    /// The next line the child printed; `None` at the end of its output. Lines that are
    /// not protocol lines are logged and skipped.
    pub async fn next_line(&mut self) -> Option<ConverterLine> {
        loop {
            match self.lines.next_line().await {
                Ok(Some(text)) => match serde_json::from_str::<ConverterLine>(&text) {
                    Ok(line) => return Some(line),
                    // A protocol line that does not parse means the converter and this
                    // binary disagree about the protocol: say so loudly.
                    Err(error) if text.starts_with("{\"event\"") => {
                        tracing::warn!(%error, "a conversion line of another shape")
                    }
                    Err(error) => tracing::debug!(%error, line = %text, "unexpected child output"),
                },
                Ok(None) => return None,
                Err(error) => {
                    tracing::warn!(%error, "reading the conversion's output failed");
                    return None;
                }
            }
        }
    }

    /// Kills the child (SIGKILL).
    pub async fn kill(&mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::warn!(%error, "killing the conversion process failed");
        }
    }

    /// Waits for the child to end; returns its status and the tail of its stderr.
    pub async fn wait(mut self) -> (std::io::Result<ExitStatus>, String) {
        let status = self.child.wait().await;
        let tail = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        (status, tail)
    }
}

fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; no memory is passed.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A sentence for a child that ended without a result.
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGABRT => " (SIGABRT: an abort, for example inside libtorch)",
            libc::SIGKILL => " (SIGKILL: killed, for example by the out-of-memory killer)",
            libc::SIGSEGV => " (SIGSEGV: a crash)",
            libc::SIGBUS => " (SIGBUS: a crash)",
            _ => "",
        };
        format!("the conversion process was killed by signal {signal}{name}")
    } else {
        match status.code() {
            Some(101) => "the conversion process panicked (exit status 101)".to_owned(),
            Some(code) => format!("the conversion process exited with status {code}"),
            None => "the conversion process ended abnormally".to_owned(),
        }
    }
}

/// The last meaningful line of a child's stderr, for an error message.
pub fn last_line(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_request() {
        let spec = ChildSpec {
            exe: "yolots-converter".into(),
            input: "in.pt".into(),
            source_name: "best.pt".into(),
            output: "out.pt".into(),
            report: "r.json".into(),
            options: JobOptions {
                fuse: false,
                ..JobOptions::default()
            },
            device: DeviceChoice::Cpu,
            latency_runs: Some(1),
            test_fault: Some(TestFault::Hang),
            cpu_threads: Some(2),
        };
        let request = spec.request();
        assert_eq!(request.input, std::path::Path::new("in.pt"));
        assert_eq!(request.source_name.as_deref(), Some("best.pt"));
        assert_eq!(request.output, std::path::Path::new("out.pt"));
        assert_eq!(
            request.report.as_deref(),
            Some(std::path::Path::new("r.json"))
        );
        assert_eq!(request.img_size, yolots_protocol::ImageSize::new(640, 640));
        assert_eq!(request.device, DeviceChoice::Cpu);
        assert!(!request.fuse);
        assert_eq!((request.latency_runs, request.latency_budget_s), (1, None));
        assert_eq!(request.test_fault, Some(TestFault::Hang));
        // Without a count, the converter's budget.
        let budget = ChildSpec {
            latency_runs: None,
            ..spec
        }
        .request();
        assert!(budget.latency_budget_s.is_some());
    }

    #[test]
    fn describes_exits() {
        use std::os::unix::process::ExitStatusExt;
        let s = ExitStatus::from_raw(libc::SIGABRT);
        assert!(describe_exit(&s).contains("SIGABRT"));
        assert_eq!(last_line("a\nb\n\n"), Some("b".into()));
    }
}
