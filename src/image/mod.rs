//! Container images: the build context (honouring .dockerignore) and its content
//! digest, builds on the Docker engine (bollard) and labels added without a
//! commit, registry credentials, the OCI
//! distribution API (does an image exist, re-tag it) and pushes with retries.

pub mod auth;
pub mod context;
pub mod ecr;
pub mod engine;
pub mod labels;
pub mod registry;
