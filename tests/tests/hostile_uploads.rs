//! Hostile uploads against a running server: files built by hand to make a checkpoint
//! reader allocate gigabytes or spin. Each is answered 422 (or 413) within a bounded time,
//! leaves nothing behind, and the server keeps serving with its memory where it was: the
//! reader runs in a bounded child process, not in the server.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use yolots_e2e::{Client, Server, TestDatabase, create_token, files_under, fixtures};

/// Longest answer to one hostile upload (the server's check bound is 10 s).
const ANSWER_BOUND: Duration = Duration::from_secs(30);
/// How much the server's resident memory may grow over all the hostile uploads.
const RSS_SLACK_KB: u64 = 50 * 1024;

// ---------------------------------------------------------------------------------------
// Pickles and zip archives, written byte by byte.

/// A pickle program (protocol 2), opcode by opcode.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Self {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    fn str(self, s: &str) -> Self {
        self.op(b'X')
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    /// LONG_BINPUT: memoize the top of the stack at `index`.
    fn put(self, index: u32) -> Self {
        self.op(b'r').raw(&index.to_le_bytes())
    }
    /// LONG_BINGET: push memo `index`.
    fn get(self, index: u32) -> Self {
        self.op(b'j').raw(&index.to_le_bytes())
    }
    /// An object of `module.name` built with NEWOBJ, its state (a dict) still to come.
    fn object(self, module: &str, name: &str) -> Self {
        self.global(module, name).op(b')').op(0x81)
    }
    /// `{"model": Model(...)` with the model's state `{"_modules": {"model": ` open.
    fn model_prefix(self) -> Self {
        self.op(b'}')
            .str("model")
            .object("models.yolo", "Model")
            .op(b'}')
            .str("_modules")
            .op(b'}')
            .str("model")
    }
    fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
}

/// One zip entry: `data` as stored in the file, `size` the uncompressed size declared.
struct Entry {
    name: String,
    data: Vec<u8>,
    method: u16,
    crc: u32,
    size: u32,
}

fn stored(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        data: data.to_vec(),
        method: 0,
        crc: crc32fast::hash(data),
        size: data.len() as u32,
    }
}

/// A deflated entry that declares `declared` uncompressed bytes, whatever it inflates to.
fn deflated(name: &str, inflated: &[u8], declared: u32) -> Entry {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(inflated).unwrap();
    Entry {
        name: name.into(),
        data: encoder.finish().unwrap(),
        method: 8,
        crc: crc32fast::hash(inflated),
        size: declared,
    }
}

/// Local headers, data and the central directory of `entries`, and where the directory
/// starts.
fn zip_body(entries: &[Entry]) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let name = e.name.as_bytes();
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        out.extend_from_slice(&e.method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&e.data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        central.extend_from_slice(&e.method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&e.crc.to_le_bytes());
        central.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        central.extend_from_slice(&e.size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    (out, central)
}

/// A plain zip archive: the end record counts the entries truthfully.
fn zip(entries: &[Entry]) -> Vec<u8> {
    let count = entries.len() as u16;
    let (mut out, central) = zip_body(entries);
    let offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A ZIP64 archive whose end records claim `claimed` entries in a directory that holds
/// the real ones (a reader that sizes a table by the claim allocates it all).
fn zip64_claiming(entries: &[Entry], claimed: u64) -> Vec<u8> {
    let (mut out, central) = zip_body(entries);
    let offset = out.len() as u64;
    out.extend_from_slice(&central);
    let record = out.len() as u64;
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&[45, 0, 45, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&claimed.to_le_bytes());
    out.extend_from_slice(&claimed.to_le_bytes());
    out.extend_from_slice(&(central.len() as u64).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[0xff; 4]);
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A torch archive around a pickle.
fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    zip(&[
        stored("archive/data.pkl", pickle),
        stored("archive/byteorder", b"little"),
        stored("archive/version", b"3\n"),
    ])
}

// ---------------------------------------------------------------------------------------
// The hostile files.

/// The memo grown through ever larger indices (PUT), then by MEMOIZE (which puts at the
/// memo's length): a reader that sizes its memo table by the largest index allocates
/// gigabytes for a few kilobytes.
fn memo_growth() -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 4]).op(b']');
    for i in 0..4096u32 {
        p = p.put((1 << 28) + i * (1 << 16));
    }
    let program = p.raw(&[0x94; 4096]).stop();
    torch_zip(&program)
}

/// A `Model` whose layer list holds a million references to one shared layer.
fn shared_layer_list() -> Vec<u8> {
    const LAYERS: usize = 1_000_000;
    let mut p = Pickle::new()
        .model_prefix()
        .object("torch.nn.modules.container", "Sequential")
        .op(b'}')
        .str("_modules")
        .global("collections", "OrderedDict")
        .op(b')')
        .op(b'R');
    // The shared layer, memoized once.
    p = p
        .object("models.common", "Conv")
        .op(b'}')
        .str("_modules")
        .op(b'}')
        .op(b's')
        .op(b'b')
        .put(0)
        .op(b'0');
    p = p.op(b'(');
    for i in 0..LAYERS {
        p = p.str(&i.to_string()).get(0);
        if i % 1000 == 999 {
            p = p.op(b'u').op(b'(');
        }
    }
    p = p.op(b'u');
    // Sequential's state done: `{_modules: ...}` then BUILD; the model's state likewise.
    let program = p
        .op(b's')
        .op(b'b')
        .op(b's')
        .op(b's')
        .op(b'b')
        .op(b's')
        .stop();
    torch_zip(&program)
}

/// A real small model whose head (and model) claim two billion classes and carry no
/// `names`: a reader that makes the default names `"0".."nc"` allocates them all.
fn huge_nc_without_names() -> Vec<u8> {
    let deploy =
        std::fs::read(yolots_e2e::workspace().join("checkpoint/tests/data/deploy.pt")).unwrap();
    let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(deploy)).unwrap();
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let mut data = Vec::new();
        file.read_to_end(&mut data).unwrap();
        if name.ends_with("data.pkl") {
            data = patch_nc(&data);
        }
        entries.push(stored(&name, &data));
    }
    zip(&entries)
}

/// In a pickle: every `'nc'` key (written out or fetched from the memo) followed by a
/// BININT1 gets 2^31 - 6 instead, every `'no'` key 2^31 - 1 (nc + 5), and the `names` key
/// is renamed.
fn patch_nc(program: &[u8]) -> Vec<u8> {
    const NC: i32 = i32::MAX - 5;
    let mut out = Vec::with_capacity(program.len() + 64);
    // Memo indices of the key strings: (index, value to write).
    let mut memo: Vec<(u32, i32)> = Vec::new();
    let mut i = 0;
    let mut patched = 0;
    while i < program.len() {
        let rest = &program[i..];
        if rest.starts_with(b"X\x05\x00\x00\x00names") {
            out.extend_from_slice(b"X\x05\x00\x00\x00namez");
            i += 10;
            continue;
        }
        // `X len key` then LONG_BINPUT or BINPUT, or a LONG_BINGET or BINGET of such a key.
        let (key_len, value) = if rest.starts_with(b"X\x02\x00\x00\x00nc") {
            (7, Some(NC))
        } else if rest.starts_with(b"X\x02\x00\x00\x00no") {
            (7, Some(NC + 5))
        } else {
            let got = match rest {
                [b'j', a, b, c, d, ..] => Some((5, u32::from_le_bytes([*a, *b, *c, *d]))),
                [b'h', a, ..] => Some((2, u32::from(*a))),
                _ => None,
            };
            match got.and_then(|(len, index)| {
                memo.iter()
                    .find(|(m, _)| *m == index)
                    .map(|(_, v)| (len, *v))
            }) {
                Some((len, v)) => (len, Some(v)),
                None => (0, None),
            }
        };
        if let Some(value) = value {
            let put = match &rest[key_len..] {
                [b'r', a, b, c, d, ..] => {
                    memo.push((u32::from_le_bytes([*a, *b, *c, *d]), value));
                    5
                }
                [b'q', a, ..] => {
                    memo.push((u32::from(*a), value));
                    2
                }
                _ => 0,
            };
            let head = key_len + put;
            out.extend_from_slice(&rest[..head]);
            i += head;
            if program.get(i) == Some(&b'K') {
                out.push(b'J');
                out.extend_from_slice(&value.to_le_bytes());
                i += 2;
                patched += 1;
            }
            continue;
        }
        out.push(program[i]);
        i += 1;
    }
    assert!(
        patched >= 3,
        "the pickle's nc and no were not found ({patched})"
    );
    out
}

/// An archive whose end records claim 2^40 entries.
fn huge_central_directory() -> Vec<u8> {
    let program = Pickle::new().op(b'}').stop();
    zip64_claiming(
        &[
            stored("archive/data.pkl", &program),
            stored("archive/byteorder", b"little"),
        ],
        1 << 40,
    )
}

/// Deflate bombs: a pickle of 256 MiB of opcodes in a few hundred kilobytes, once
/// declared truthfully and once declared as 60 MiB.
fn deflate_bombs() -> [Vec<u8>; 2] {
    let bomb = deflated("archive/data.pkl", &vec![b'N'; 256 << 20], 256 << 20);
    [256 << 20, 60 << 20].map(|declared| {
        zip(&[
            Entry {
                name: bomb.name.clone(),
                data: bomb.data.clone(),
                size: declared,
                ..bomb
            },
            stored("archive/byteorder", b"little"),
        ])
    })
}

/// Values that double at every level through the memo: level k is a list holding level
/// k - 1 twice, 64 levels deep (2^64 leaves to anything that walks it as a tree), under a
/// model's parameters and as the model's `names`.
fn amplification() -> Vec<u8> {
    let mut p = Pickle::new().op(b']').str("leaf").op(b'a').put(0).op(b'0');
    for level in 1..64u32 {
        p = p
            .op(b']')
            .op(b'(')
            .get(level - 1)
            .get(level - 1)
            .op(b'e')
            .put(level)
            .op(b'0');
    }
    let program = p
        .op(b'}')
        .str("model")
        .object("models.yolo", "Model")
        .op(b'}')
        .str("_parameters")
        .op(b'}')
        .str("w")
        .get(63)
        .op(b's')
        .op(b's')
        .str("names")
        .get(63)
        .op(b's')
        .str("yaml")
        .get(63)
        .op(b's')
        .op(b'b')
        .op(b's')
        .str("optimizer")
        .get(63)
        .op(b's')
        .stop();
    torch_zip(&program)
}

/// A pickle of 60 MiB of opcodes that push and pop: work, not memory.
fn spinner() -> Vec<u8> {
    let mut program = vec![0x80, 2];
    program.extend(b"N0".repeat(30 << 20));
    program.extend(b"}.");
    torch_zip(&program)
}

/// A pickle holding one 60 MB byte string: the reader must hold it (and its pickle).
fn big_bytes() -> Vec<u8> {
    let len: u64 = 60 << 20;
    let mut program = vec![0x80, 4, 0x8e];
    program.extend_from_slice(&len.to_le_bytes());
    program.extend(std::iter::repeat_n(7u8, len as usize));
    program.push(b'.');
    torch_zip(&program)
}

// ---------------------------------------------------------------------------------------
// The server side.

/// Resident memory of a process, in KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn healthy(client: &Client) {
    let health = client.get("/api/v1/health").send().await.unwrap();
    assert_eq!(health.status(), 200, "the server stopped answering");
}

/// Posts a file; returns status, problem body and how long the answer took.
async fn post(client: &Client, name: &str, bytes: Vec<u8>) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = tokio::time::timeout(ANSWER_BOUND, client.upload(name, bytes, None))
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within {ANSWER_BOUND:?}"))
        .unwrap();
    let status = response.status().as_u16();
    if status >= 400 {
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body, started.elapsed())
}

async fn jobs_total(client: &Client) -> u64 {
    let list: serde_json::Value = client
        .get("/api/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["total"].as_u64().unwrap()
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_the_server_carries_on() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &["--workers", "0", "--upload-check-timeout-secs", "10"],
    )
    .await
    .unwrap();
    let client = server.client(&create_token(&db.url, "hostile", false).unwrap());
    let tiny = std::fs::read(fixtures().join("yolov7-tiny.pt")).unwrap();

    // Warm up with two ordinary refusals (multipart, storage, the check), then the
    // baseline.
    let (status, _, _) = post(&client, "text.pt", b"not a checkpoint".to_vec()).await;
    assert_eq!(status, 422);
    let (status, _, _) = post(&client, "cut.pt", tiny[..tiny.len() / 2].to_vec()).await;
    assert_eq!(status, 422);
    let before = rss_kb(server.pid());

    let [bomb, lying_bomb] = deflate_bombs();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("memo-growth.pt", memo_growth()),
        ("shared-layers.pt", shared_layer_list()),
        ("huge-nc.pt", huge_nc_without_names()),
        ("central-directory.pt", huge_central_directory()),
        ("deflate-bomb.pt", bomb),
        ("lying-deflate-bomb.pt", lying_bomb),
        ("amplification.pt", amplification()),
        ("spinner.pt", spinner()),
    ];
    let mut peak = before;
    for (name, bytes) in cases {
        let size = bytes.len();
        let (status, body, took) = post(&client, name, bytes).await;
        let after = rss_kb(server.pid());
        peak = peak.max(after);
        eprintln!(
            "{name}: {size} bytes -> {status} {} in {:.2} s; server RSS {} MiB: {}",
            body["code"],
            took.as_secs_f64(),
            after / 1024,
            body["detail"]
        );
        assert!(
            status == 422 || status == 413,
            "{name}: answered {status}: {body}"
        );
        assert_eq!(body["status"], status, "{name}");
        assert!(
            body["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{name}: {body}"
        );
        healthy(&client).await;
    }
    // Nothing of the refused files stays; no job was created.
    let left = files_under(data.path());
    assert!(left.is_empty(), "refused uploads left files: {left:?}");
    assert_eq!(jobs_total(&client).await, 0);
    // A valid upload still goes through.
    let (status, job, _) = post(&client, "yolov7-tiny.pt", tiny).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(jobs_total(&client).await, 1);
    let after = rss_kb(server.pid());
    eprintln!(
        "server RSS: {} MiB before, {} MiB peak, {} MiB after",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        after <= before + RSS_SLACK_KB,
        "the server's memory grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn a_check_past_its_bounds_is_refused_with_a_code_of_its_own() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &db.url,
        data.path(),
        &[
            "--workers",
            "0",
            "--upload-check-memory-mb",
            "40",
            "--upload-check-timeout-secs",
            "0.5",
        ],
    )
    .await
    .unwrap();
    let client = server.client(&create_token(&db.url, "bounds", false).unwrap());

    // Memory: a file the reader may read, but not in 40 MiB.
    let (status, body, took) = post(&client, "big-bytes.pt", big_bytes()).await;
    eprintln!("big-bytes: {status} {body} in {:.2} s", took.as_secs_f64());
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "check_resources_exceeded", "{body}");
    assert_eq!(
        body["type"],
        "https://yolots.dev/problems/check_resources_exceeded"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("40 MiB of memory"),
        "{body}"
    );
    healthy(&client).await;

    // Time: sixty million opcodes do not fit in half a second. The file itself is larger
    // than 40 MiB, so this bound is checked by a server whose memory bound is the default.
    let spin_data = tempfile::tempdir().unwrap();
    let spin_server = Server::start(
        &db.url,
        spin_data.path(),
        &["--workers", "0", "--upload-check-timeout-secs", "0.5"],
    )
    .await
    .unwrap();
    let spin_client = spin_server.client(&create_token(&db.url, "spin", false).unwrap());
    let (status, body, took) = post(&spin_client, "spinner.pt", spinner()).await;
    eprintln!("spinner: {status} {body} in {:.2} s", took.as_secs_f64());
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "check_resources_exceeded", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("longer than 0.5 s"),
        "{body}"
    );
    healthy(&spin_client).await;
    let left = files_under(spin_data.path());
    assert!(left.is_empty(), "refused uploads left files: {left:?}");

    // The reader's own refusals keep their codes; nothing stays behind.
    let (status, body, _) = post(&client, "text.pt", b"not a checkpoint".to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("not_an_archive"))
    );
    let left = files_under(data.path());
    assert!(left.is_empty(), "refused uploads left files: {left:?}");
    assert_eq!(jobs_total(&client).await, 0);
}

#[test]
fn the_check_subcommand_is_hidden() {
    let out = std::process::Command::new(yolots_e2e::binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("inspect"), "{help}");
    assert!(!help.contains("check-upload"), "{help}");
}

/// A legacy-format file whose storage-key list holds 2,000 references to one 16 MiB
/// string: 16 MB on disk, 32 GB if the keys were copied.
fn repeated_legacy_key() -> Vec<u8> {
    let mut file = yolots_checkpoint::fuzzing::LEGACY_HEADER.to_vec();
    file.extend(Pickle::new().op(b'}').stop());
    let mut keys = Pickle::new()
        .op(b']')
        .op(b'(')
        .str(&"1".repeat(16 << 20))
        .put(0);
    for _ in 1..2_000 {
        keys = keys.get(0);
    }
    file.extend(keys.op(b'e').stop());
    file
}

/// `yolots ARGS` with `env`; its exit status, stdout and stderr.
fn yolots(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(yolots_e2e::binary())
        .args(args)
        .env_remove("YOLOTS_UPLOAD_CHECK_MEMORY_MB")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_reads_under_the_upload_checks_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-bytes.pt");
    std::fs::write(&big, big_bytes()).unwrap();
    let keys = dir.path().join("repeated-key.pt");
    std::fs::write(&keys, repeated_legacy_key()).unwrap();
    let arg = |s: &'static str| std::ffi::OsStr::new(s);
    let bound = [("YOLOTS_UPLOAD_CHECK_MEMORY_MB", "40")];

    // A file the reader may read, but not within the bound: refused with the bound's code.
    let (code, stdout, stderr) = yolots(&[arg("inspect"), arg("--json"), big.as_os_str()], &bound);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let problem: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(problem["code"], "check_resources_exceeded", "{problem}");
    assert!(stderr.contains("40 MiB of memory"), "{stderr}");

    let (code, stdout, stderr) = yolots(&[arg("convert"), big.as_os_str()], &bound);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("error: reading the checkpoint needed more than 40 MiB"),
        "{stderr}"
    );
    let (code, stdout, _) = yolots(
        &[
            arg("convert"),
            big.as_os_str(),
            arg("--progress"),
            arg("json"),
        ],
        &bound,
    );
    assert_eq!(code, Some(2));
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (line["event"].as_str(), line["code"].as_str()),
        (Some("error"), Some("check_resources_exceeded")),
        "{line}"
    );
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(written.len(), 2, "a refused conversion wrote files");

    // The key list that grew past 23 GB is refused by the reader itself, at its default
    // bounds, with the reader's code.
    let started = Instant::now();
    let (code, stdout, stderr) = yolots(&[arg("inspect"), arg("--json"), keys.as_os_str()], &[]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let problem: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(problem["code"], "limit_exceeded", "{problem}");
    assert!(stderr.contains("legacy storage key length"), "{stderr}");
    let (code, _, stderr) = yolots(&[arg("convert"), keys.as_os_str()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("legacy storage key length"), "{stderr}");
    assert!(started.elapsed() < ANSWER_BOUND);
}
