//! mlcd: continuous delivery for machine-learning models. The library behind the
//! `mlcd` binary: inputs + config + event → [`plan::Plan`] → mode runner → report.

pub mod cli;
pub mod cloud;
pub mod config;
pub mod context;
pub mod error;
pub mod gitops;
pub mod identity;
pub mod image;
pub mod inputs;
pub mod instance;
pub mod modes;
pub mod monitor;
pub mod plan;
pub mod registry;
pub mod report;
pub mod run;
pub mod secrets;
pub mod serve;
pub mod train;
