//! `cargo xtask setup`: everything the project needs, idempotent.

use clap::Args;

use crate::libtorch::Libtorch;
use crate::onnxruntime::{self, OnnxRuntime};
use crate::postgres::Database;
use crate::process::step;
use crate::{browser, libtorch, migrations, moto, paths, postgres, schemathesis, web};

#[derive(Debug, Clone, Default, Args)]
pub struct SetupArgs {
    /// Also install what the tests need (Chromium and ChromeDriver, Python's torch,
    /// schemathesis, moto's S3 server).
    #[arg(long)]
    pub for_tests: bool,
    /// Skip building the web page.
    #[arg(long)]
    pub no_web: bool,
    /// Skip PostgreSQL and the migrations (a build-only machine, such as the Docker
    /// builder).
    #[arg(long)]
    pub no_database: bool,
}

impl SetupArgs {
    /// What shipping the binaries needs: the tools and the web page, no database.
    pub const SHIPPING: SetupArgs = SetupArgs {
        for_tests: false,
        no_web: false,
        no_database: true,
    };
}

/// What setup installs besides the database.
#[derive(Debug, Clone)]
pub struct Tools {
    pub libtorch: Libtorch,
    pub onnxruntime: OnnxRuntime,
    pub browser: Option<browser::Browser>,
    pub schemathesis: Option<std::path::PathBuf>,
    pub moto_server: Option<std::path::PathBuf>,
}

/// What setup made available.
#[derive(Debug, Clone)]
pub struct Environment {
    pub libtorch: Libtorch,
    /// ONNX Runtime's library (for the converter) and Python (for the ONNX tests).
    pub onnxruntime: OnnxRuntime,
    pub database: Database,
    pub browser: Option<browser::Browser>,
    /// The schemathesis executable (for the API's property-based test).
    pub schemathesis: Option<std::path::PathBuf>,
    /// moto's `moto_server` executable (an S3-compatible server for the storage tests).
    pub moto_server: Option<std::path::PathBuf>,
}

impl Environment {
    /// Variables every child process (the server, the tests) gets.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            ("DATABASE_URL".to_owned(), self.database.url.clone()),
            (
                "YOLOTS_WEB_DIR".to_owned(),
                web::out_dir().display().to_string(),
            ),
            (
                "YOLOTS_FIXTURES".to_owned(),
                paths::fixtures().display().to_string(),
            ),
            // The resolved folder, not the clone's `.yolots/libtorch` link: torch-sys rebuilds
            // when `LIBTORCH` changes, and the build cache is shared by every clone.
            (
                "LIBTORCH".to_owned(),
                self.libtorch.dir.display().to_string(),
            ),
        ];
        vars.push((
            "YOLOTS_ONNXRUNTIME".to_owned(),
            self.onnxruntime.library.display().to_string(),
        ));
        vars.push((
            "YOLOTS_ONNX_PYTHON".to_owned(),
            self.onnxruntime.python.display().to_string(),
        ));
        if let Some(python) = &self.libtorch.python {
            vars.push(("YOLOTS_PYTHON".to_owned(), python.display().to_string()));
        }
        if let Some(schemathesis) = &self.schemathesis {
            vars.push((
                "YOLOTS_SCHEMATHESIS".to_owned(),
                schemathesis.display().to_string(),
            ));
        }
        if let Some(moto_server) = &self.moto_server {
            vars.push((
                "YOLOTS_MOTO_SERVER".to_owned(),
                moto_server.display().to_string(),
            ));
        }
        if let Some(browser) = &self.browser {
            vars.push((
                "YOLOTS_CHROMIUM".to_owned(),
                browser.chromium.display().to_string(),
            ));
            vars.push((
                "YOLOTS_CHROMEDRIVER".to_owned(),
                browser.chromedriver.display().to_string(),
            ));
        }
        vars
    }
}

/// Installs and builds what the project needs, without the database. The downloads
/// (libtorch's 5 GB wheel, the test tools) run beside the web page's compilation: one is
/// bound by the network and the disk, the other by the CPU.
pub fn tools(args: &SetupArgs) -> anyhow::Result<Tools> {
    std::fs::create_dir_all(paths::state())?;
    let tools = prepare_tools(args)?;
    // Every cargo this process runs from now on (release builds, tests, benchmarks) builds
    // torch-sys against the resolved folder, as the child processes of `vars` do: with the
    // clone's `.yolots/libtorch` link instead (what `.cargo/config.toml` gives), torch-sys
    // would rebuild in every clone and the binaries would embed the clone's path.
    // SAFETY: the setup threads have joined; no other thread reads the environment now.
    unsafe { std::env::set_var("LIBTORCH", &tools.libtorch.dir) };
    Ok(tools)
}

fn prepare_tools(args: &SetupArgs) -> anyhow::Result<Tools> {
    std::thread::scope(|scope| {
        let libtorch = scope.spawn(|| libtorch::ensure(args.for_tests));
        let test_tools = scope.spawn(|| {
            let runtime = onnxruntime::ensure()?;
            Ok::<_, anyhow::Error>((runtime, test_tools(args.for_tests)?))
        });
        let web = if args.no_web {
            Ok(())
        } else {
            web::ensure().map(drop)
        };
        let libtorch = joined(libtorch.join())?;
        step(format!("libtorch: {}", libtorch.dir.display()));
        let (onnxruntime, (browser, schemathesis, moto_server)) = joined(test_tools.join())?;
        step(format!("ONNX Runtime: {}", onnxruntime.library.display()));
        web?;
        Ok(Tools {
            libtorch,
            onnxruntime,
            browser,
            schemathesis,
            moto_server,
        })
    })
}

/// What only the tests need: Chromium and ChromeDriver, schemathesis, moto's server.
type TestTools = (
    Option<browser::Browser>,
    Option<std::path::PathBuf>,
    Option<std::path::PathBuf>,
);

fn test_tools(for_tests: bool) -> anyhow::Result<TestTools> {
    if !for_tests {
        return Ok((None, None, None));
    }
    let fixtures = paths::fixtures();
    if !fixtures.join("yolov7-tiny.pt").is_file() {
        anyhow::bail!(
            "the tests need the YOLOv7 fixtures (yolov7-tiny.pt and the others) in {}: \
             put the shared fixtures folder there or name it in YOLOTS_FIXTURES",
            fixtures.display()
        );
    }
    Ok((
        Some(browser::ensure()?),
        Some(schemathesis::ensure()?),
        Some(moto::ensure()?),
    ))
}

/// A setup thread's outcome; a panic in it becomes an error.
fn joined<T>(outcome: std::thread::Result<anyhow::Result<T>>) -> anyhow::Result<T> {
    outcome.unwrap_or_else(|_| Err(anyhow::anyhow!("a setup step panicked")))
}

/// The `setup` command: everything, or everything but the database.
pub fn command(args: &SetupArgs) -> anyhow::Result<()> {
    if args.no_database {
        tools(args)?;
        step("setup done (no database)");
        Ok(())
    } else {
        setup(args).map(|_| ())
    }
}

/// Everything: the tools, then PostgreSQL with the migrations applied.
pub fn setup(args: &SetupArgs) -> anyhow::Result<Environment> {
    let Tools {
        libtorch,
        onnxruntime,
        browser,
        schemathesis,
        moto_server,
    } = tools(args)?;
    let database = postgres::ensure()?;
    step("applying database migrations");
    if let Err(error) = migrations::apply(&database.url) {
        database.stop_if_started();
        return Err(error);
    }
    step("setup done");
    Ok(Environment {
        libtorch,
        onnxruntime,
        database,
        browser,
        schemathesis,
        moto_server,
    })
}
