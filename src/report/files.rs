//! The runner's file commands: `$GITHUB_OUTPUT` in the heredoc form with a random
//! delimiter, and `$GITHUB_STEP_SUMMARY` kept under GitHub's 1 MiB limit.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use rand::Rng;

/// GitHub refuses a step summary above 1 MiB.
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// Formats `name<<DELIM\nvalue\nDELIM\n` with a fresh random delimiter that occurs
/// in neither the name nor the value, as `@actions/core` does.
pub fn heredoc(name: &str, value: &str) -> String {
    let mut rng = rand::thread_rng();
    loop {
        let delimiter = format!("ghadelimiter_{:032x}", rng.gen::<u128>());
        if !name.contains(&delimiter) && !value.contains(&delimiter) {
            let mut out = String::new();
            let _ = write!(out, "{name}<<{delimiter}\n{value}\n{delimiter}\n");
            return out;
        }
    }
}

/// Appends outputs to the `$GITHUB_OUTPUT` file.
pub fn write_outputs<'a>(
    path: &Path,
    outputs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::io::Result<()> {
    let mut text = String::new();
    for (k, v) in outputs {
        text.push_str(&heredoc(k, v));
    }
    append(path, &text)
}

/// `markdown` cut to fit in `limit` bytes (at a character boundary), with a note
/// saying it was cut.
pub fn fit_summary(markdown: &str, limit: usize) -> String {
    if markdown.len() <= limit {
        return markdown.to_string();
    }
    let note = "\n\n> **Note:** this summary was cut to stay under GitHub's 1 MiB step-summary limit; the full plan is in the `plan` output.\n";
    if limit < note.len() {
        return String::new();
    }
    let mut end = limit - note.len();
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &markdown[..end])
}

/// Appends Markdown to the `$GITHUB_STEP_SUMMARY` file, within the limit (counting
/// what the file already holds).
pub fn write_summary(path: &Path, markdown: &str) -> std::io::Result<()> {
    let used = std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let room = SUMMARY_LIMIT.saturating_sub(used);
    if room == 0 {
        return Ok(());
    }
    append(path, &fit_summary(markdown, room))
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_survives_multiline_values() {
        let h = heredoc("plan", "{\n\"a\": 1\n}");
        let first = h.lines().next().unwrap();
        let delim = first.strip_prefix("plan<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert!(h.ends_with(&format!("\n{delim}\n")));
        assert_ne!(
            heredoc("a", "b"),
            heredoc("a", "b"),
            "delimiters are random"
        );
    }

    #[test]
    fn outputs_append_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        std::fs::write(&p, "earlier<<x\n1\nx\n").unwrap();
        write_outputs(&p, [("status", "planned"), ("tags", "a\nb")]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("earlier<<x\n1\nx\n"));
        assert!(text.contains("status<<ghadelimiter_"));
        assert!(text.contains("\na\nb\n"));
    }

    #[test]
    fn summaries_are_cut_under_the_limit_at_a_char_boundary() {
        let big = "é".repeat(SUMMARY_LIMIT);
        let fitted = fit_summary(&big, SUMMARY_LIMIT);
        assert!(fitted.len() <= SUMMARY_LIMIT);
        assert!(fitted.contains("was cut"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary");
        write_summary(&p, &big).unwrap();
        write_summary(&p, "more").unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() as usize <= SUMMARY_LIMIT);
    }
}
