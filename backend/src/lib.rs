//! The `yolots` binary's library: the command line, the REST service and its database.
//!
//! - [`bounds`]: memory and CPU bounds of child processes.
//! - [`cli`]: clap subcommands and their entry points.
//! - [`config`]: settings shared by the subcommands (flags and environment variables).
//! - [`converter`]: where the converting binary (the one that loads libtorch) is.
//! - [`db`]: the PostgreSQL pool and migrations.
//! - [`model`]: the job as stored and as the API shows it, and its options.
//! - [`names`]: names from uploads made safe to show.
//! - [`queue`]: the PostgreSQL job queue, its event log and notifications.
//! - [`worker`]: workers that run each conversion in a child process.
//! - [`storage`]: uploads and artifacts in an object store.
//! - [`upload_check`]: uploads read by the checkpoint reader in a bounded child process.
//! - [`auth`]: bearer tokens and owners.
//! - [`metrics`]: Prometheus metrics.
//! - [`api`]: the actix-web routes under `/api/v1`.
//! - [`openapi`]: the OpenAPI document generated from the routes.
//! - [`server`]: `yolots serve`, wiring the pieces together.

pub mod api;
pub mod auth;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod converter;
pub mod db;
pub mod metrics;
pub mod model;
pub mod names;
pub mod openapi;
pub mod queue;
pub mod server;
pub mod storage;
pub mod upload_check;
pub mod worker;
