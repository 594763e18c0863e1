//! Running `yolots check-upload` under hard bounds: a data-segment limit (`RLIMIT_DATA`),
//! a CPU-time limit (`RLIMIT_CPU`) and a wall-time limit enforced here (SIGKILL). The
//! child runs in a process group of its own and dies with the server (`PR_SET_PDEATHSIG`);
//! whatever a file makes the reader do, only the child ends, and its memory goes back to
//! the system with it.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::protocol::CheckLine;
use crate::bounds::set_limit;

/// Most bytes of the child's stdout kept (its one line is far shorter).
const STDOUT_LIMIT: usize = 64 << 10;
/// How much of the child's stderr is kept, to explain a crash.
const STDERR_TAIL: usize = 4096;

/// The bounds of one check.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// `RLIMIT_DATA`, bytes: heap, anonymous mappings, thread stacks. Unlike `RLIMIT_AS`
    /// it does not count the read-only mappings of the executable and its libraries.
    pub memory_bytes: u64,
    /// Wall time before the child is killed.
    pub timeout: Duration,
}

/// How a check ended.
#[derive(Debug)]
pub enum Ended {
    /// The child printed its line.
    Line(CheckLine),
    /// The child ran out of its memory bound.
    OutOfMemory,
    /// The child ran past its time bound (wall or CPU) and was killed.
    OutOfTime,
    /// The child ended without a line for another reason.
    Crashed { status: String, stderr: String },
}

/// Runs `exe check-upload FILE` under `bounds`.
pub async fn run(exe: &Path, file: &Path, bounds: Bounds) -> std::io::Result<Ended> {
    let mut command = Command::new(exe);
    command
        .arg("check-upload")
        .arg(file)
        .env("RUST_LOG", "warn")
        .env_remove("YOLOTS_LOG_FORMAT")
        // Nothing in the reader uses threads; keep libraries from starting pools.
        .env("OMP_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    // The child reads one local file: it gets none of the server's credentials.
    for (key, _) in std::env::vars_os() {
        if key == "DATABASE_URL" || key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    let memory = bounds.memory_bytes;
    // Whole seconds of CPU, at least one past the wall bound: the wall bound answers
    // first; this one holds should the server stop watching.
    let cpu_secs = bounds.timeout.as_secs().saturating_add(2);
    // SAFETY: the closure runs in the forked child before exec and only makes system
    // calls (prctl, setrlimit), which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || limit_self(memory, cpu_secs));
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let outcome = tokio::time::timeout(bounds.timeout, async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, STDOUT_LIMIT),
            read_tail(stderr, STDERR_TAIL),
            child.wait()
        );
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = outcome else {
        kill_group(&mut child).await;
        return Ok(Ended::OutOfTime);
    };
    let status = status?;
    Ok(classify(&status, &out, &err))
}

/// What an ended child's status, stdout and stderr tail mean.
fn classify(status: &ExitStatus, stdout: &[u8], stderr: &str) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    if status.success()
        && let Some(line) = String::from_utf8_lossy(stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<CheckLine>(l).ok())
    {
        return Ended::Line(line);
    }
    if status.signal() == Some(libc::SIGXCPU) {
        return Ended::OutOfTime;
    }
    if crate::bounds::allocation_failed(stderr) {
        return Ended::OutOfMemory;
    }
    Ended::Crashed {
        status: status.to_string(),
        stderr: stderr.to_owned(),
    }
}

/// In the forked child: die with the parent, no core dumps, the memory and CPU bounds.
fn limit_self(memory_bytes: u64, cpu_secs: u64) -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; no memory is passed.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    set_limit(libc::RLIMIT_CORE, 0, 0)?;
    set_limit(libc::RLIMIT_DATA, memory_bytes, memory_bytes)?;
    // SIGXCPU at the soft limit, SIGKILL at the hard one.
    set_limit(libc::RLIMIT_CPU, cpu_secs, cpu_secs.saturating_add(1))
}

/// SIGKILL to the child's process group (the child and anything it started), then reap.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        // SAFETY: kill(2) with a process group id and a signal number.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "killing the upload check failed");
    }
}

/// Everything a pipe gives until it closes, keeping at most `limit` bytes.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend(buf.iter().take(n.min(room)));
    }
    kept
}

/// The last `limit` bytes a pipe gives until it closes, as text.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(limit);
    if let Some(mut pipe) = pipe {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend(buf.iter().take(n));
            while tail.len() > limit {
                tail.pop_front();
            }
        }
    }
    String::from_utf8_lossy(tail.make_contiguous()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn a_printed_line_wins() {
        let out = br#"{"outcome":"refused","code":"truncated","message":"m"}"#;
        assert!(matches!(
            classify(&exited(0), out, ""),
            Ended::Line(CheckLine::Refused { .. })
        ));
    }

    #[test]
    fn allocation_failures_and_cpu_limits_are_named() {
        let abort = ExitStatus::from_raw(libc::SIGABRT);
        assert!(matches!(
            classify(
                &abort,
                b"",
                "memory allocation of 8589934592 bytes failed\n"
            ),
            Ended::OutOfMemory
        ));
        assert!(matches!(
            classify(&ExitStatus::from_raw(libc::SIGXCPU), b"", ""),
            Ended::OutOfTime
        ));
        assert!(matches!(
            classify(&exited(101), b"", "thread 'main' panicked at src/x.rs"),
            Ended::Crashed { .. }
        ));
        // A line from a child that then failed is not trusted.
        let out = br#"{"outcome":"failed","message":"m"}"#;
        assert!(matches!(classify(&abort, out, ""), Ended::Crashed { .. }));
    }

    #[tokio::test]
    async fn the_memory_bound_holds_in_the_child() {
        // A shell that builds a 200 MB string under a 64 MiB bound: its allocation fails.
        let script = "v=$(head -c 200000000 /dev/zero | tr '\\0' x); echo ${#v}";
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: as in `run`.
        unsafe {
            command.pre_exec(|| limit_self(64 << 20, 10));
        }
        let output = command.output().await.unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert_ne!(
            printed.trim(),
            "200000000",
            "200 MB fit under a 64 MiB bound"
        );
        // Without the bound the same script succeeds.
        let output = Command::new("sh")
            .args(["-c", script])
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "200000000");
    }
}
