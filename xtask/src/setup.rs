//! `cargo xtask setup`: everything the project needs, idempotent.

use std::process::Command;

use clap::Args;

use crate::libtorch::Libtorch;
use crate::postgres::Database;
use crate::process::{self, step};
use crate::{browser, libtorch, paths, postgres, schemathesis, web};

#[derive(Debug, Clone, Default, Args)]
pub struct SetupArgs {
    /// Also install what the tests need (Chromium and ChromeDriver, Python's torch,
    /// schemathesis).
    #[arg(long)]
    pub for_tests: bool,
    /// Skip building the web page.
    #[arg(long)]
    pub no_web: bool,
}

/// What setup made available.
#[derive(Debug, Clone)]
pub struct Environment {
    pub libtorch: Libtorch,
    pub database: Database,
    pub browser: Option<browser::Browser>,
    /// The schemathesis executable (for the API's property-based test).
    pub schemathesis: Option<std::path::PathBuf>,
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
        ];
        if let Some(python) = &self.libtorch.python {
            vars.push(("YOLOTS_PYTHON".to_owned(), python.display().to_string()));
        }
        if let Some(schemathesis) = &self.schemathesis {
            vars.push((
                "YOLOTS_SCHEMATHESIS".to_owned(),
                schemathesis.display().to_string(),
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

pub fn setup(args: &SetupArgs) -> anyhow::Result<Environment> {
    std::fs::create_dir_all(paths::state())?;
    let libtorch = libtorch::ensure(args.for_tests)?;
    step(format!("libtorch: {}", libtorch.dir.display()));
    if !args.no_web {
        web::ensure()?;
    }
    let browser = if args.for_tests {
        Some(browser::ensure()?)
    } else {
        None
    };
    let schemathesis = if args.for_tests {
        Some(schemathesis::ensure()?)
    } else {
        None
    };
    let database = postgres::ensure()?;
    step("applying database migrations");
    let migrated = process::run(
        Command::new("cargo")
            .args(["run", "--quiet", "-p", "yolots", "--", "migrate"])
            .env("DATABASE_URL", &database.url)
            .current_dir(paths::root()),
    );
    if let Err(error) = migrated {
        database.stop_if_started();
        return Err(error);
    }
    step("setup done");
    Ok(Environment {
        libtorch,
        database,
        browser,
        schemathesis,
    })
}
