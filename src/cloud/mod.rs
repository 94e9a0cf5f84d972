//! Shared cloud plumbing: retries with backoff (used by every HTTP client and by
//! image pushes), and, with the train and deploy backends, AWS SigV4 and GCP tokens.

pub mod retry;
