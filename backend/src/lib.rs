//! The `yolots` binary's library: the command line, the REST service and its database.
//!
//! - [`cli`]: clap subcommands and their entry points.
//! - [`config`]: settings shared by the subcommands (flags and environment variables).
//! - [`db`]: the PostgreSQL pool and migrations.
//! - [`api`]: the actix-web routes under `/api/v1`.
//! - [`server`]: `yolots serve`, wiring the pieces together.

pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod server;
