//! Secret values: a wrapper that never prints its value, and the process-wide
//! masker that every line of output passes through before it is written.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use secrecy::{ExposeSecret, SecretString};

/// A credential. `Debug` and `Display` print `***`; the value is read only through
/// [`Secret::expose`], at the single place that hands it to a client.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value and registers it with the masker, so it is redacted from any
    /// output from now on.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        register(&value);
        Secret(SecretString::from(value))
    }

    /// The value, for the one call that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

fn registry() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Set once the run has masked its secrets in GitHub Actions: from then on, a
/// secret learned mid-run (an ECR password, a token) is masked as it arrives.
static ANNOUNCE: AtomicBool = AtomicBool::new(false);

/// From now on, print `::add-mask::` for every newly registered secret.
pub fn announce_new_secrets() {
    ANNOUNCE.store(true, Ordering::SeqCst);
}

/// Remembers a secret value (and each of its lines) so [`redact`] hides it.
/// Values shorter than 4 characters are not registered: masking them would shred
/// ordinary text, and no real credential is that short.
pub fn register(value: &str) {
    let mut fresh: Vec<String> = Vec::new();
    {
        let mut secrets = registry().lock().unwrap_or_else(|e| e.into_inner());
        for part in std::iter::once(value).chain(value.lines()) {
            let part = part.trim();
            if part.len() >= 4 && !secrets.iter().any(|s| s == part) {
                secrets.push(part.to_string());
                fresh.push(part.to_string());
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    // Printed after the registry lock is released (printing elsewhere takes the
    // stdout lock first and then this one).
    if ANNOUNCE.load(Ordering::SeqCst) && !fresh.is_empty() {
        let mut out = std::io::stdout().lock();
        for part in fresh {
            let escaped = part
                .replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A");
            let _ = writeln!(out, "::add-mask::{escaped}");
        }
        let _ = out.flush();
    }
}

/// The registered secret values, one per line, for `::add-mask::` commands.
pub fn registered() -> Vec<String> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let secrets = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("ghp_verysecretvalue123");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "ghp_verysecretvalue123");
        assert_eq!(
            redact("token ghp_verysecretvalue123 rejected"),
            "token *** rejected"
        );
    }

    #[test]
    fn each_line_of_a_multiline_secret_is_masked() {
        register("-----BEGIN KEY-----\nAAAAsecretline\n-----END KEY-----");
        assert_eq!(redact("got AAAAsecretline here"), "got *** here");
    }
}
