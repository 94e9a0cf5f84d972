//! The comment's text: the hidden model marker, the commit it describes, and one
//! section per mode between hidden markers, so a later run can read the sections
//! back, keep the others' and replace its own. Sections about another commit are
//! folded away and marked stale.

use super::fit;

/// The modes in the order their sections appear.
pub const MODES: &[&str] = &["build", "train", "deploy", "monitor"];

/// One mode's section.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// `build`, `train`, `deploy` or `monitor`.
    pub mode: String,
    /// The full commit SHA the section describes.
    pub commit: String,
    /// The section's Markdown (without markers).
    pub body: String,
}

/// The hidden marker that finds a model's comment again.
pub fn marker(model: &str) -> String {
    format!("<!-- mlcd:model={model} -->")
}

fn start(mode: &str, commit: &str) -> String {
    format!("<!-- mlcd:section mode={mode} commit={commit} -->")
}

fn end(mode: &str) -> String {
    format!("<!-- mlcd:end mode={mode} -->")
}

const BODY: &str = "<!-- mlcd:body -->";
const BODY_END: &str = "<!-- mlcd:body-end -->";

/// `abc1234`: a commit as people read it.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

/// The sections an existing comment holds, in its order. Text outside the
/// markers (or a section whose markers are damaged) is ignored.
pub fn parse(existing: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut rest = existing;
    while let Some(i) = rest.find("<!-- mlcd:section mode=") {
        rest = &rest[i..];
        let Some(close) = rest.find("-->") else { break };
        let head = &rest["<!-- mlcd:section ".len()..close];
        let mut mode = None;
        let mut commit = None;
        for kv in head.split_whitespace() {
            match kv.split_once('=') {
                Some(("mode", v)) => mode = Some(v.to_string()),
                Some(("commit", v)) => commit = Some(v.to_string()),
                _ => {}
            }
        }
        let after = &rest[close + 3..];
        let (Some(mode), Some(commit)) = (mode, commit) else {
            rest = after;
            continue;
        };
        let Some(stop) = after.find(&end(&mode)) else {
            rest = after;
            continue;
        };
        let inner = &after[..stop];
        let body = match (inner.find(BODY), inner.rfind(BODY_END)) {
            (Some(a), Some(b)) if a + BODY.len() <= b => inner[a + BODY.len()..b].trim(),
            _ => inner.trim(),
        };
        if MODES.contains(&mode.as_str()) && !out.iter().any(|s: &Section| s.mode == mode) {
            out.push(Section {
                mode,
                commit,
                body: body.to_string(),
            });
        }
        rest = &after[stop..];
    }
    out
}

/// Who wrote the comment, for its header.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The model's slug.
    pub model: &'a str,
    /// The commit this run acted on (full SHA).
    pub commit: &'a str,
    /// The commit's page, when known.
    pub commit_url: Option<String>,
    /// The run's page, when known.
    pub run_url: Option<String>,
}

fn render_section(s: &Section, body: &str, current: &str) -> String {
    let mut out = start(&s.mode, &s.commit);
    out.push('\n');
    if s.commit == current {
        out.push_str(&format!("{BODY}\n{body}\n{BODY_END}\n"));
    } else {
        out.push_str(&format!(
            "<details><summary>⚠️ <b>{}</b>: stale — from an earlier commit <code>{}</code>, not run for <code>{}</code> yet</summary>\n\n{BODY}\n{body}\n{BODY_END}\n\n</details>\n",
            s.mode,
            short(&s.commit),
            short(current)
        ));
    }
    out.push_str(&end(&s.mode));
    out.push('\n');
    out
}

fn header(h: &Header<'_>) -> String {
    let commit = match &h.commit_url {
        Some(u) => format!("[`{}`]({u})", short(h.commit)),
        None => format!("`{}`", short(h.commit)),
    };
    let run = h
        .run_url
        .as_ref()
        .map(|u| format!(" · last updated by [this run]({u})"))
        .unwrap_or_default();
    format!(
        "{}\n## mlcd · `{}`\n\nFor commit {commit}{run}. This comment is edited in place by every mlcd run of this model.\n\n",
        marker(h.model),
        h.model
    )
}

/// The new comment: this run's section in place of its mode's, the other
/// sections kept (stale when about another commit), all within [`super::LIMIT`].
pub fn assemble(h: &Header<'_>, existing: Option<&str>, new: Section) -> String {
    assemble_within(h, existing, new, super::LIMIT)
}

/// [`assemble`] with a given limit (bytes).
pub fn assemble_within(
    h: &Header<'_>,
    existing: Option<&str>,
    new: Section,
    limit: usize,
) -> String {
    let mut sections: Vec<Section> = existing.map(parse).unwrap_or_default();
    sections.retain(|s| s.mode != new.mode);
    sections.push(new);
    let rank = |s: &Section| {
        (
            s.commit != h.commit,
            MODES
                .iter()
                .position(|m| *m == s.mode)
                .unwrap_or(MODES.len()),
        )
    };
    sections.sort_by_key(rank);
    let head = header(h);
    // Summarised one level at a time until the whole fits.
    let mut levels = vec![0u8; sections.len()];
    loop {
        let text = head.clone()
            + &sections
                .iter()
                .zip(&levels)
                .map(|(s, l)| render_section(s, &fit::summarise(&s.body, *l), h.commit))
                .collect::<String>();
        if text.len() <= limit {
            return text;
        }
        // Stale sections first, all the way; then the current ones evenly, the
        // longest first.
        let next = (0..sections.len())
            .filter(|i| levels[*i] < fit::LAST_LEVEL)
            .min_by_key(|i| {
                (
                    sections[*i].commit == h.commit,
                    levels[*i],
                    std::cmp::Reverse(sections[*i].body.len()),
                )
            });
        match next {
            Some(i) => levels[i] += 1,
            // Every section is down to one line: only the header and the markers
            // are left, which a sane limit always holds.
            None => return fit::cut_plain(&text, limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaa111111111111111111111111111111111";
    const B: &str = "bbbbbbb222222222222222222222222222222222";

    fn h(commit: &str) -> Header<'_> {
        Header {
            model: "churn",
            commit,
            commit_url: None,
            run_url: Some("https://github.com/acme/churn/actions/runs/9".into()),
        }
    }

    fn sec(mode: &str, commit: &str, body: &str) -> Section {
        Section {
            mode: mode.into(),
            commit: commit.into(),
            body: body.into(),
        }
    }

    #[test]
    fn a_comment_names_the_model_and_commit_and_reads_back_its_section() {
        let text = assemble(&h(A), None, sec("build", A, "#### Build\n\nimage `x`"));
        assert!(text.starts_with("<!-- mlcd:model=churn -->\n"));
        assert!(text.contains("For commit `aaaaaaa`"));
        assert_eq!(
            parse(&text),
            vec![sec("build", A, "#### Build\n\nimage `x`")]
        );
    }

    #[test]
    fn sections_of_other_modes_on_the_same_commit_are_kept_and_ordered() {
        let first = assemble(&h(A), None, sec("deploy", A, "deployed"));
        let second = assemble(&h(A), Some(&first), sec("build", A, "built"));
        let third = assemble(&h(A), Some(&second), sec("train", A, "trained"));
        let modes: Vec<String> = parse(&third).into_iter().map(|s| s.mode).collect();
        assert_eq!(modes, ["build", "train", "deploy"]);
        assert!(!third.contains("stale"));
        // A re-run of a mode replaces its section, it does not add one.
        let again = assemble(&h(A), Some(&third), sec("train", A, "trained again"));
        let bodies: Vec<String> = parse(&again).into_iter().map(|s| s.body).collect();
        assert_eq!(bodies, ["built", "trained again", "deployed"]);
    }

    #[test]
    fn a_section_about_an_older_commit_is_marked_stale_and_not_mixed_in() {
        let old = assemble(&h(A), None, sec("train", A, "accuracy 0.91"));
        let new = assemble(&h(B), Some(&old), sec("build", B, "built"));
        assert!(new.contains("For commit `bbbbbbb`"));
        let stale_at = new
            .find("stale — from an earlier commit <code>aaaaaaa</code>")
            .unwrap();
        assert!(
            new.find("built").unwrap() < stale_at,
            "current sections come first"
        );
        assert!(new[stale_at..].contains("accuracy 0.91"));
        // Read back, the stale section keeps its own commit and body.
        assert!(parse(&new).contains(&sec("train", A, "accuracy 0.91")));
        // Once train runs for the new commit, the stale one is gone.
        let newer = assemble(&h(B), Some(&new), sec("train", B, "accuracy 0.93"));
        assert!(!newer.contains("stale"));
        assert!(!newer.contains("0.91"));
    }

    #[test]
    fn damaged_or_foreign_text_is_ignored_when_reading_back() {
        let text = "hello <!-- mlcd:section mode=build commit=abc --> no end\n<!-- mlcd:section mode=nonsense commit=x -->y<!-- mlcd:end mode=nonsense -->";
        assert!(parse(text).is_empty());
    }

    #[test]
    fn a_long_report_is_summarised_under_the_limit_without_cutting_a_table() {
        let mut body = String::from("#### Train\n\n| metric | value |\n|---|---|\n");
        for i in 0..5000 {
            body.push_str(&format!("| metric_{i} | 0.{i} |\n"));
        }
        body.push_str("\nafter the table\n");
        let old = "x".repeat(30_000);
        let prev = assemble_within(&h(A), None, sec("deploy", A, &old), usize::MAX);
        let text = assemble(&h(A), Some(&prev), sec("train", A, &body));
        assert!(
            text.len() <= crate::report::comment::LIMIT,
            "{}",
            text.len()
        );
        for line in text.lines().filter(|l| l.starts_with('|')) {
            assert!(line.ends_with('|'), "a table row was cut: {line}");
        }
        assert!(text.contains("| metric_0 | 0.0 |"));
        assert!(text.contains("more rows"), "says what was left out");
        assert!(text.contains("after the table"));
        let modes: Vec<String> = parse(&text).into_iter().map(|s| s.mode).collect();
        assert_eq!(modes, ["train", "deploy"]);
    }
}
