//! Berth's registry: every HTTP route (the OCI Distribution v1.1 API under `/v2/`, the admin
//! API, health and metrics),
//! the services behind them, blob storage and uploads, and the server that runs them.
//!
//! Layers, outside in: `api` (HTTP only) → `service` (domain rules) → `storage` (blob
//! bytes) and `berth_raft` (replicated metadata). `config` is the typed configuration the
//! binary layers from defaults, a file, the environment and flags.

pub mod api;
mod app;
pub mod config;
mod metrics;
pub mod server;
pub mod service;
pub mod storage;
mod tls;

pub use app::App;
pub use config::Config;
pub use server::{Server, StartReport, StartupError, ADMIN_PASSWORD_FILE};
