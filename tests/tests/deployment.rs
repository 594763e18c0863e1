//! The deployment files checked against the real binary, since no container engine runs
//! on the development machines: `Dockerfile` and `docker-compose.yml` are read, and every
//! command they give yolots is run with `--check-config` (the binary parses its flags and
//! environment exactly as at a real start, checks the database URL and the storage with
//! its `AWS_*` settings, and exits without starting anything). Besides: every variable
//! the files set is one yolots reads, the services, volumes, dependencies and the GPU
//! reservation fit together, the builder runs the project's own `setup` and `dist`, and
//! the health checks (bash speaking HTTP, as the image has no curl) are run against a real
//! server and a real worker.

// Tests and their helpers may unwrap: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::str::FromStr;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3ConfigKey;
use serde_json::Value;
use yolots_e2e::{Server, TestDatabase, Worker, binary, free_port, workspace};

type Env = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------
// The Dockerfile

/// One stage of the Dockerfile: its base image, its name and its instructions.
#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    /// (keyword in upper case, arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
            .collect()
    }

    fn last(&self, keyword: &str) -> Option<&str> {
        self.all(keyword).pop()
    }

    /// The `ENV` settings of the stage (`ENV A=1 B=2` form).
    fn env(&self) -> Env {
        let mut env = Env::new();
        for args in self.all("ENV") {
            for pair in shell_words(args) {
                let (key, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {args}: use the KEY=VALUE form"));
                env.insert(key.to_owned(), value.to_owned());
            }
        }
        env
    }
}

/// Reads the Dockerfile into stages, with the global `ARG` defaults substituted in `FROM`.
fn dockerfile() -> Vec<Stage> {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment lines end nothing, even inside a continued instruction.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside an instruction"
    );

    let mut global_args = Env::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let keyword = keyword.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let base = substitute(words[0], &global_args);
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("FROM {args}: expected IMAGE [AS NAME]"),
            };
            stages.push(Stage {
                base,
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, args));
        } else if keyword == "ARG" {
            let (key, value) = args.split_once('=').unwrap_or((&args, ""));
            global_args.insert(key.to_owned(), value.to_owned());
        } else {
            panic!("{keyword} before the first FROM");
        }
    }
    stages
}

/// `${NAME}` replaced by the build argument's default.
fn substitute(text: &str, args: &Env) -> String {
    let mut out = text.to_owned();
    for (key, value) in args {
        out = out.replace(&format!("${{{key}}}"), value);
    }
    assert!(!out.contains('$'), "{text}: an ARG without a default");
    out
}

/// Words of a simple shell-like line (no quotes are used where this is called).
fn shell_words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// The JSON (exec) form of `ENTRYPOINT`, `CMD` or `HEALTHCHECK ... CMD`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("`{args}` is not the exec form: {e}"))
}

/// The stages the deployment needs: the builder and the runtime (the last stage).
fn builder_and_runtime(stages: &[Stage]) -> (&Stage, &Stage) {
    let runtime = stages.last().expect("the Dockerfile has no stage");
    let copy = runtime
        .all("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from="))
        .expect("the runtime stage copies nothing from the builder");
    let from = copy["--from=".len()..].split_whitespace().next().unwrap();
    let builder = stages
        .iter()
        .find(|s| s.name.as_deref() == Some(from))
        .unwrap_or_else(|| panic!("COPY --from={from}: no stage of that name"));
    (builder, runtime)
}

/// `rust:1.95.0-bookworm` -> ((1, 95), "bookworm").
fn rust_image(base: &str) -> ((u32, u32), String) {
    let tag = base
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("builder stage on {base}, not the Rust image"));
    let (version, distro) = tag
        .split_once('-')
        .unwrap_or_else(|| panic!("{base}: pin a Debian release (rust:X.Y.Z-bookworm)"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (
        (parts.next().unwrap(), parts.next().unwrap()),
        distro.to_owned(),
    )
}

/// The workspace's `rust-version`.
fn workspace_rust_version() -> (u32, u32) {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = \""))
        .expect("the workspace Cargo.toml has no rust-version");
    let mut parts = line
        .trim_end_matches('"')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn dockerfile_builds_with_the_projects_own_steps() {
    let stages = dockerfile();
    let (builder, runtime) = builder_and_runtime(&stages);

    // A Rust that builds the workspace, on the Debian release the runtime stage runs.
    let (rust, builder_distro) = rust_image(&builder.base);
    assert!(
        rust >= workspace_rust_version(),
        "the builder's Rust {rust:?} is older than the workspace's rust-version"
    );
    let runtime_distro = runtime
        .base
        .strip_prefix("debian:")
        .and_then(|t| t.strip_suffix("-slim"))
        .unwrap_or_else(|| panic!("runtime stage on {}, not debian:X-slim", runtime.base));
    assert_eq!(
        builder_distro, runtime_distro,
        "the binary is linked against the builder's glibc: same Debian release"
    );

    // The builder runs what CI and developers run, and dist fills the copied folder.
    let runs = builder.all("RUN").join("\n");
    assert!(
        runs.contains("cargo xtask setup --no-database"),
        "the builder must run `cargo xtask setup --no-database`"
    );
    let dist_out = runs
        .split("cargo xtask dist --out ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the builder must run `cargo xtask dist --out DIR`");
    let copy = runtime
        .all("COPY")
        .into_iter()
        .find(|c| c.starts_with("--from="))
        .unwrap();
    let copy_words = shell_words(copy);
    assert_eq!(
        copy_words[1], dist_out,
        "the runtime stage must copy the folder dist fills"
    );
    let prefix = copy_words[2].trim_end_matches('/').to_owned();

    // The entry point is the copied binary, the page is the copied one, not root.
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("no ENTRYPOINT"));
    assert_eq!(entrypoint, [format!("{prefix}/bin/yolots")]);
    let cmd = exec_form(runtime.last("CMD").expect("no CMD"));
    assert_eq!(cmd.first().map(String::as_str), Some("serve"));
    assert_eq!(flag(&cmd, "--web-dir"), Some(format!("{prefix}/web")));
    let user = runtime
        .last("USER")
        .expect("the image must not run as root");
    assert!(user != "root" && user != "0", "USER {user}");

    // The data folder is where the volume is, and it is the binary's data folder.
    let env = runtime.env();
    let data_dir = env.get("YOLOTS_DATA_DIR").expect("no YOLOTS_DATA_DIR");
    let volume = runtime.last("VOLUME").expect("no VOLUME");
    assert_eq!(
        volume.trim_matches(|c| c == '[' || c == ']' || c == '"'),
        data_dir
    );

    // Served where it is exposed and where the health check knocks.
    let bind = flag(&cmd, "--bind").expect("CMD has no --bind");
    let port = bind.rsplit(':').next().unwrap();
    assert!(
        bind.starts_with("0.0.0.0:"),
        "inside a container, bind all addresses"
    );
    assert_eq!(runtime.last("EXPOSE"), Some(port));
    let health = healthcheck_script(runtime);
    assert_eq!(probe_port(&health), port);
}

/// The Dockerfile's default command, with the image's environment, passes the binary's
/// own configuration check (DATABASE_URL comes from `docker run -e` or compose).
#[test]
fn dockerfile_command_is_accepted_by_the_binary() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let mut env = image_env(runtime);
    env.insert(
        "DATABASE_URL".into(),
        "postgres://yolots:secret@db:5432/yolots".into(),
    );
    let cmd = exec_form(runtime.last("CMD").unwrap());
    let out = check_config(&cmd, &env);
    assert_ok(&out, "the Dockerfile's CMD");
    assert!(stdout(&out).contains("serve: configuration ok"));
    // The check can fail: without the database URL the same command is refused.
    env.remove("DATABASE_URL");
    assert_eq!(check_config(&cmd, &env).status.code(), Some(2));
}

/// The image's environment as a yolots process sees it (PATH is the container's
/// business, not the binary's).
fn image_env(runtime: &Stage) -> Env {
    let mut env = runtime.env();
    env.remove("PATH");
    env
}

/// The bash script of the Dockerfile's `HEALTHCHECK CMD ["bash", "-c", SCRIPT]`.
fn healthcheck_script(runtime: &Stage) -> String {
    let health = runtime.last("HEALTHCHECK").expect("no HEALTHCHECK");
    let json = &health[health
        .find("CMD [")
        .expect("HEALTHCHECK ... CMD [exec form]")
        + 4..];
    bash_script(&exec_form(json))
}

fn bash_script(command: &[String]) -> String {
    match command {
        [bash, c, script] if bash == "bash" && c == "-c" => script.clone(),
        other => panic!("expected [\"bash\", \"-c\", SCRIPT], got {other:?}"),
    }
}

/// The port a `/dev/tcp/127.0.0.1/PORT` probe knocks on.
fn probe_port(script: &str) -> &str {
    let rest = script
        .split("/dev/tcp/127.0.0.1/")
        .nth(1)
        .expect("the probe does not open /dev/tcp/127.0.0.1/PORT");
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    &rest[..end]
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

/// The compose file as compose reads it: YAML anchors resolved, `${VAR:-default}`
/// interpolated with the defaults (the file must work without a `.env`).
fn compose() -> Value {
    let text = std::fs::read_to_string(workspace().join("docker-compose.yml")).unwrap();
    let mut value: Value = serde_yaml_ng::from_str(&text).unwrap();
    interpolate_all(&mut value);
    value
}

fn interpolate_all(value: &mut Value) {
    match value {
        Value::String(s) => *s = interpolate(s),
        Value::Array(items) => items.iter_mut().for_each(interpolate_all),
        Value::Object(map) => map.values_mut().for_each(interpolate_all),
        _ => {}
    }
}

/// Compose's interpolation: `$$` is a dollar, `${NAME:-default}` / `${NAME-default}`
/// take the default here; a variable without a default is refused.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
            let expr = &inner[..end];
            let default = expr
                .split_once(":-")
                .or_else(|| expr.split_once('-'))
                .map(|(_, d)| d)
                .unwrap_or_else(|| panic!("`${{{expr}}}` has no default in `{text}`"));
            out.push_str(default);
            rest = &inner[end + 1..];
        } else {
            panic!("use ${{NAME:-default}}, not a bare $ in `{text}`");
        }
    }
    out.push_str(rest);
    out
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("no services")
}

/// The services that run the yolots image (built here).
fn yolots_services(compose: &Value) -> BTreeMap<String, Value> {
    let services = services(compose);
    let images: BTreeSet<&str> = services
        .values()
        .filter(|s| s.get("build").is_some())
        .filter_map(|s| s["image"].as_str())
        .collect();
    services
        .iter()
        .filter(|(_, s)| {
            s.get("build").is_some() || s["image"].as_str().is_some_and(|i| images.contains(i))
        })
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect()
}

/// A service's environment, mapping or list form.
fn service_env(service: &Value) -> Env {
    match &service["environment"] {
        Value::Null => Env::new(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                let (k, v) = i.as_str().unwrap().split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        other => panic!("environment: {other}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list (exec form), got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The value after `--name` (or of `--name=value`) in an argument list.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == name {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{name}=")).map(str::to_owned)
        }
    })
}

/// The bash script of a compose health check `["CMD", "bash", "-c", SCRIPT]`.
fn compose_probe(service: &Value) -> String {
    let test = strings(&service["healthcheck"]["test"]);
    assert_eq!(test[0], "CMD", "health check test: {test:?}");
    bash_script(&test[1..])
}

/// Runs the binary with `--check-config`, with exactly `env` as its environment.
fn check_config(args: &[String], env: &Env) -> Output {
    let bin = binary();
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p yolots`",
        bin.display()
    );
    Command::new(bin)
        .args(args)
        .arg("--check-config")
        .env_clear()
        .envs(env)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} refused ({}):\n{}{}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `yolots ... --help` text.
fn help(args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert_ok(&out, "--help");
    stdout(&out)
}

/// What a yolots service runs: the Dockerfile's entry point (not overridden) with its
/// command, in its environment (the image's, then the service's).
fn service_command(name: &str, service: &Value, runtime: &Stage) -> (Vec<String>, Env) {
    assert!(
        service.get("entrypoint").is_none(),
        "{name}: keep the image's entry point (the binary)"
    );
    let command = strings(&service["command"]);
    let mut env = image_env(runtime);
    env.extend(service_env(service));
    (command, env)
}

#[test]
fn compose_commands_are_accepted_by_the_binary() {
    let compose = compose();
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let yolots = yolots_services(&compose);
    assert_eq!(
        yolots.keys().map(String::as_str).collect::<Vec<_>>(),
        ["api", "worker"]
    );
    for (name, service) in &yolots {
        let (command, env) = service_command(name, service, runtime);
        let out = check_config(&command, &env);
        assert_ok(&out, &format!("the `{name}` service's command"));
        let summary = stdout(&out);
        assert!(
            summary.contains(&format!("{}: configuration ok", command[0])),
            "{summary}"
        );
        assert!(
            summary.contains("storage: s3://"),
            "{name} must use the shared S3 store: {summary}"
        );

        // The check is not a rubber stamp: a flag the binary lacks, a bad value, and
        // plain HTTP to the store without AWS_ALLOW_HTTP are all refused.
        let mut bad_flag = command.clone();
        bad_flag.push("--no-such-flag".into());
        assert_eq!(check_config(&bad_flag, &env).status.code(), Some(2));
        let mut bad_value = env.clone();
        bad_value.insert("YOLOTS_POLL_SECS".into(), "soon".into());
        assert_eq!(check_config(&command, &bad_value).status.code(), Some(2));
        let mut no_http = env.clone();
        no_http.remove("AWS_ALLOW_HTTP");
        let refused = check_config(&command, &no_http);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("AWS_ALLOW_HTTP"));
    }
}

/// Whether yolots reads a variable: one of its flags' `[env: NAME=...]`, a variable its
/// top-level help names (logging), or an `AWS_*` setting object_store understands
/// (object_store ignores names it does not know: a misspelt one would be dropped quietly).
fn reads_variable(key: &str, flags_help: &str, top_help: &str) -> bool {
    if key.starts_with("AWS_") {
        AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()).is_ok()
    } else {
        flags_help.contains(&format!("[env: {key}="))
            || top_help
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == key)
    }
}

#[test]
fn compose_sets_only_variables_yolots_reads() {
    let compose = compose();
    let top_help = help(&[]);
    let flags_help = help(&["serve"]) + &help(&["worker"]);
    for (name, service) in &yolots_services(&compose) {
        for key in service_env(service).keys() {
            assert!(
                reads_variable(key, &flags_help, &top_help),
                "{name}: yolots does not read {key}"
            );
        }
    }
    // And the check tells misspellings apart.
    for typo in ["YOLOTS_STORGE", "AWS_SECRET_KEY", "DATABASE_URI", "RUST_LO"] {
        assert!(!reads_variable(typo, &flags_help, &top_help), "{typo}");
    }
}

#[test]
fn compose_services_volumes_and_dependencies_fit_together() {
    let compose = compose();
    let services = services(&compose);
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let yolots = yolots_services(&compose);
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().map(String::as_str).collect())
        .unwrap_or_default();

    for (name, service) in services {
        // Named volumes are declared; bind mounts (paths) need nothing.
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if !source.starts_with(['.', '/', '~']) {
                assert!(
                    declared.contains(source),
                    "{name}: volume `{source}` is not declared"
                );
            }
        }
        // Dependencies exist and wait for something the target can report.
        for (target, condition) in service["depends_on"].as_object().into_iter().flatten() {
            let target_service = services
                .get(target)
                .unwrap_or_else(|| panic!("{name} depends on `{target}`, which is no service"));
            match condition["condition"].as_str() {
                Some("service_healthy") => assert!(
                    target_service.get("healthcheck").is_some()
                        || (yolots.contains_key(target) && runtime.last("HEALTHCHECK").is_some()),
                    "{name} waits for `{target}` to be healthy, which has no health check"
                ),
                Some("service_completed_successfully") => assert!(
                    target_service["restart"].as_str().is_none_or(|r| r == "no"),
                    "{name} waits for `{target}` to complete, which restarts"
                ),
                Some("service_started") => {}
                other => panic!("{name} -> {target}: unknown condition {other:?}"),
            }
        }
    }

    // The database URL is the postgres service's user, password and database.
    let postgres = service_env(&services["postgres"]);
    for (name, service) in &yolots {
        let env = service_env(service);
        let url = reqwest::Url::parse(&env["DATABASE_URL"]).unwrap();
        assert_eq!(url.host_str(), Some("postgres"), "{name}");
        assert_eq!(url.port(), Some(5432), "{name}");
        assert_eq!(url.username(), postgres["POSTGRES_USER"], "{name}");
        assert_eq!(url.password(), Some(postgres["POSTGRES_PASSWORD"].as_str()));
        assert_eq!(
            url.path(),
            format!("/{}", postgres["POSTGRES_DB"]),
            "{name}"
        );

        // The store is the minio service, with its credentials and the bucket made.
        let minio = service_env(&services["minio"]);
        let endpoint = reqwest::Url::parse(&env["AWS_ENDPOINT_URL"]).unwrap();
        assert!(services.contains_key(endpoint.host_str().unwrap()));
        assert_eq!(env["AWS_ACCESS_KEY_ID"], minio["MINIO_ROOT_USER"]);
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], minio["MINIO_ROOT_PASSWORD"]);
        let bucket = env["YOLOTS_STORAGE"]
            .strip_prefix("s3://")
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let create = services["createbucket"]["command"].to_string();
        assert!(
            create.contains(&format!("mc mb --ignore-existing store/{bucket}")),
            "createbucket does not make the bucket `{bucket}`: {create}"
        );
        assert!(create.contains(&format!("http://minio:{}", endpoint.port().unwrap())));
    }

    // The API is published on the port it binds.
    let api = &yolots["api"];
    let command = strings(&api["command"]);
    let bind_port = flag(&command, "--bind").unwrap();
    let bind_port = bind_port.rsplit(':').next().unwrap();
    let ports = strings(&api["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p.rsplit(':').next() == Some(bind_port)),
        "api binds {bind_port} but publishes {ports:?}"
    );
    assert_eq!(flag(&command, "--workers").as_deref(), Some("0"));
}

#[test]
fn compose_worker_reserves_a_gpu_and_scales() {
    let compose = compose();
    let worker = &compose["services"]["worker"];
    let devices = worker["deploy"]["resources"]["reservations"]["devices"]
        .as_array()
        .expect("the worker reserves no device");
    let gpu = devices
        .iter()
        .find(|d| d["driver"] == "nvidia")
        .expect("the worker reserves no NVIDIA device");
    assert_eq!(gpu["count"], 1);
    assert!(strings(&gpu["capabilities"]).contains(&"gpu".to_owned()));
    let command = strings(&worker["command"]);
    assert_eq!(command[0], "worker");
    assert_eq!(flag(&command, "--device").as_deref(), Some("cuda:0"));

    // `--scale worker=N`: nothing that two replicas cannot share.
    assert!(worker.get("container_name").is_none());
    assert!(
        worker.get("ports").is_none(),
        "published ports collide on --scale"
    );

    // Docker waits longer than the worker's own grace period before SIGKILL.
    let grace: f64 = service_env(worker)
        .get("YOLOTS_SHUTDOWN_GRACE_SECS")
        .map_or(30.0, |g| g.parse().unwrap());
    let stop = worker["stop_grace_period"]
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok())
        .expect("the worker needs a stop_grace_period (in seconds, `45s`)");
    assert!(stop > grace, "stop_grace_period {stop}s <= grace {grace}s");

    // Its health check knocks on the metrics address it binds.
    let script = compose_probe(worker);
    let metrics = flag(&command, "--metrics-bind").expect("no --metrics-bind");
    assert_eq!(Some(probe_port(&script)), metrics.rsplit(':').next());
}

// ---------------------------------------------------------------------------------------
// The health checks, run for real

/// Runs a probe script with its port replaced; true when it exits 0.
fn probe(script: &str, port: u16) -> bool {
    let script = script.replace(
        &format!("/dev/tcp/127.0.0.1/{}", probe_port(script)),
        &format!("/dev/tcp/127.0.0.1/{port}"),
    );
    Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn healthchecks_probe_a_real_server_and_worker() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let serve_probe = healthcheck_script(runtime);
    let compose = compose();
    let worker_probe = compose_probe(&compose["services"]["worker"]);

    // Nothing listens: both probes fail.
    let closed = free_port().unwrap();
    assert!(!probe(&serve_probe, closed));
    assert!(!probe(&worker_probe, closed));

    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, data.path(), &["--workers", "0"])
        .await
        .unwrap();
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        probe(&serve_probe, port),
        "the image's health check fails on a healthy server"
    );

    let metrics = free_port().unwrap();
    let bind = format!("127.0.0.1:{metrics}");
    let _worker = Worker::start(
        &db.url,
        data.path(),
        &["--device", "cpu", "--metrics-bind", &bind],
    )
    .unwrap();
    let started = Instant::now();
    while !probe(&worker_probe, metrics) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker's health check never passed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
