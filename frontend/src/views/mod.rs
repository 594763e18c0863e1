//! The components of the page: the shell and router ([`app`]), and one module per view.

pub mod app;
pub mod common;
pub mod inspection;
pub mod job;
pub mod jobs;
pub mod options;
pub mod report;
pub mod upload;
