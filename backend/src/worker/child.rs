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
//!
//! The child runs under the job's bounds (`ChildLimits`): a data-segment limit
//! (`RLIMIT_DATA`: heap, anonymous mappings, thread stacks; not the read-only mappings of
//! libtorch's libraries, which `RLIMIT_AS` would count) and a CPU-time limit
//! (`RLIMIT_CPU`, `SIGXCPU` at the soft limit, `SIGKILL` a few seconds later). Its stderr
//! is watched as it passes for the words of a failed allocation, so a child that ran into
//! its memory bound is told from one that crashed however it then ends (an error line, a
//! panic, or an abort inside libtorch).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use yolots_protocol::{ConvertRequest, ConverterLine, DeviceChoice, TestFault};

use crate::bounds::{AllocationWatch, set_limit};
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
    /// The child's memory and CPU bounds.
    pub limits: ChildLimits,
}

/// The bounds one conversion process runs under.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildLimits {
    /// `RLIMIT_DATA`, bytes; `None`: no memory bound.
    pub memory_bytes: Option<u64>,
    /// `RLIMIT_CPU`, seconds of all threads together; `None`: no CPU bound.
    pub cpu_secs: Option<u64>,
}

/// Seconds between `SIGXCPU` (the soft CPU limit) and `SIGKILL` (the hard one).
const CPU_GRACE_SECS: u64 = 5;

/// In the forked child: die with the worker, no core dumps, the memory and CPU bounds.
fn limit_self(limits: ChildLimits) -> std::io::Result<()> {
    die_with_parent()?;
    set_limit(libc::RLIMIT_CORE, 0, 0)?;
    if let Some(bytes) = limits.memory_bytes {
        set_limit(libc::RLIMIT_DATA, bytes, bytes)?;
    }
    if let Some(secs) = limits.cpu_secs {
        set_limit(libc::RLIMIT_CPU, secs, secs.saturating_add(CPU_GRACE_SECS))?;
    }
    Ok(())
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
        if let Some(runs) = self.latency_runs {
            // Exactly this many, as `--latency-runs N` alone asks.
            request.latency_runs = runs;
            request.latency_budget_s = None;
        }
        request.with_test_fault(self.test_fault)
    }
}

/// A running conversion.
pub struct ConversionChild {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The tail of stderr, and whether any of it said an allocation failed.
    stderr: Option<JoinHandle<(String, bool)>>,
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
        let limits = spec.limits;
        // SAFETY: the closure runs in the forked child before exec and only makes system
        // calls (prctl, setrlimit), which are async-signal-safe; it allocates nothing.
        unsafe {
            command.pre_exec(move || limit_self(limits));
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
                let mut watch = AllocationWatch::default();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = buf.get(..n).unwrap_or_default();
                    watch.feed(chunk);
                    tail.extend(chunk);
                    while tail.len() > STDERR_TAIL {
                        tail.pop_front();
                    }
                }
                let text =
                    String::from_utf8_lossy(&tail.into_iter().collect::<Vec<u8>>()).into_owned();
                (text, watch.seen())
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

    /// Waits for the child to end; returns its status, the tail of its stderr and
    /// whether its stderr said an allocation failed.
    pub async fn wait(mut self) -> (std::io::Result<ExitStatus>, String, bool) {
        let status = self.child.wait().await;
        let (tail, allocation_failed) = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => (String::new(), false),
        };
        (status, tail, allocation_failed)
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

/// Which of its bounds a conversion ran into, if any: the CPU bound when the child was
/// stopped by `SIGXCPU` (the kernel's signal at the soft CPU limit, which nothing else
/// sends), the memory bound when it had one and said an allocation failed (in its stderr
/// or its error line), however it then ended. A death without either sign (`SIGSEGV`, a
/// `SIGKILL` from outside, a panic about something else) stays a crash: the worker does not
/// guess.
pub fn exceeded(
    limits: &ChildLimits,
    status: Option<&ExitStatus>,
    allocation_failed: bool,
) -> Option<Bound> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(secs) = limits.cpu_secs
        && status.and_then(|s| s.signal()) == Some(libc::SIGXCPU)
    {
        return Some(Bound::Cpu { secs });
    }
    match limits.memory_bytes {
        Some(bytes) if allocation_failed => Some(Bound::Memory { bytes }),
        _ => None,
    }
}

/// A bound a conversion ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Memory { bytes: u64 },
    Cpu { secs: u64 },
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Memory { bytes } => write!(
                f,
                "the conversion needed more than the {} MiB of memory this worker gives it",
                bytes >> 20
            ),
            Bound::Cpu { secs } => write!(
                f,
                "the conversion used more than the {secs} s of CPU time this worker gives it"
            ),
        }
    }
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
            limits: ChildLimits::default(),
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
        assert_eq!(
            request.test_fault(),
            Some(TestFault::Hang).filter(|_| cfg!(feature = "test-hooks"))
        );
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

    #[test]
    fn bounds_run_into_are_told_from_crashes() {
        use std::os::unix::process::ExitStatusExt;
        let bounded = ChildLimits {
            memory_bytes: Some(1 << 30),
            cpu_secs: Some(60),
        };
        let xcpu = ExitStatus::from_raw(libc::SIGXCPU);
        let abort = ExitStatus::from_raw(libc::SIGABRT);
        let panicked = ExitStatus::from_raw(101 << 8);
        assert_eq!(
            exceeded(&bounded, Some(&xcpu), false),
            Some(Bound::Cpu { secs: 60 })
        );
        assert_eq!(
            exceeded(&bounded, Some(&abort), true),
            Some(Bound::Memory { bytes: 1 << 30 })
        );
        assert_eq!(
            exceeded(&bounded, Some(&panicked), true),
            Some(Bound::Memory { bytes: 1 << 30 })
        );
        // No sign: a crash.
        assert_eq!(exceeded(&bounded, Some(&abort), false), None);
        let segv = ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(exceeded(&bounded, Some(&segv), false), None);
        // Without a memory bound an allocation failure is not this worker's bound.
        assert_eq!(exceeded(&ChildLimits::default(), Some(&abort), true), None);
        assert!(
            Bound::Memory { bytes: 1 << 30 }
                .to_string()
                .contains("1024 MiB")
        );
    }

    #[tokio::test]
    async fn the_bounds_hold_in_the_child() {
        // A shell that spins: stopped by SIGXCPU at a one-second CPU bound.
        let spec_limits = ChildLimits {
            memory_bytes: Some(256 << 20),
            cpu_secs: Some(1),
        };
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "while :; do :; done"]);
        // SAFETY: as in `spawn`.
        unsafe {
            command.pre_exec(move || limit_self(spec_limits));
        }
        let status = command.status().await.unwrap();
        assert_eq!(
            exceeded(&spec_limits, Some(&status), false),
            Some(Bound::Cpu { secs: 1 })
        );
    }
}
