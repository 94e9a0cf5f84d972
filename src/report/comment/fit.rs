//! Summarising a section so the comment fits GitHub's limit: charts go first,
//! then long tables keep their first rows (a table is never cut in half: its
//! header stays and whole rows go, with a line saying how many), then long
//! paragraphs are shortened, and at the last level only the section's heading is
//! left. Each level is a pure function of the Markdown.

/// The level at which only the section's heading is left.
pub const LAST_LEVEL: u8 = 5;

const SEE_RUN: &str = "see the run's step summary";

#[derive(Debug)]
enum Block<'a> {
    /// A fenced block (```), with its info string (`mermaid`).
    Fence { info: &'a str, lines: Vec<&'a str> },
    /// Consecutive `|` lines.
    Table(Vec<&'a str>),
    /// Anything else up to a blank line.
    Text(Vec<&'a str>),
}

fn blocks(md: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            let mut body = vec![line];
            for l in lines.by_ref() {
                body.push(l);
                if l.trim_start().starts_with("```") {
                    break;
                }
            }
            out.push(Block::Fence {
                info: info.trim(),
                lines: body,
            });
        } else if t.starts_with('|') {
            let mut rows = vec![line];
            while let Some(l) = lines.peek() {
                if !l.trim_start().starts_with('|') {
                    break;
                }
                rows.push(lines.next().unwrap_or_default());
            }
            out.push(Block::Table(rows));
        } else if t.is_empty() {
            continue;
        } else {
            let mut text = vec![line];
            while let Some(l) = lines.peek() {
                let lt = l.trim_start();
                if lt.is_empty() || lt.starts_with('|') || lt.starts_with("```") {
                    break;
                }
                text.push(lines.next().unwrap_or_default());
            }
            out.push(Block::Text(text));
        }
    }
    out
}

/// A table keeping its header, its separator and the first `keep` rows.
fn table(rows: &[&str], keep: usize) -> String {
    let head = rows.len().min(2);
    let data = rows.len() - head;
    if data <= keep {
        return rows.join("\n");
    }
    if keep == 0 {
        return format!("_A table of {data} rows was left out to keep this comment under GitHub's limit: {SEE_RUN}._");
    }
    let mut s = rows[..head + keep].join("\n");
    s.push_str(&format!(
        "\n\n_… and {} more rows, left out to keep this comment under GitHub's limit: {SEE_RUN}._",
        data - keep
    ));
    s
}

/// Text shortened to about `max` bytes at a word boundary.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text[..end].rfind(char::is_whitespace).unwrap_or(end);
    format!("{} …", &text[..cut])
}

/// `md` summarised to `level` (0: unchanged … [`LAST_LEVEL`]: its heading only).
pub fn summarise(md: &str, level: u8) -> String {
    if level == 0 {
        return md.to_string();
    }
    if level >= LAST_LEVEL {
        let heading = md
            .lines()
            .find(|l| l.starts_with('#'))
            .map(|l| format!("{}\n\n", shorten(l, 200)))
            .unwrap_or_default();
        return format!(
            "{heading}_Left out to keep this comment under GitHub's limit: {SEE_RUN}._"
        );
    }
    let (rows, para) = match level {
        1 => (usize::MAX, usize::MAX),
        2 => (20, 4000),
        3 => (5, 1000),
        _ => (0, 300),
    };
    let mut out: Vec<String> = Vec::new();
    for b in blocks(md) {
        out.push(match b {
            Block::Fence { info, lines } => {
                if info == "mermaid" || level >= 3 {
                    format!(
                        "_A {} was left out to keep this comment under GitHub's limit._",
                        if info == "mermaid" {
                            "chart"
                        } else {
                            "code block"
                        }
                    )
                } else {
                    lines.join("\n")
                }
            }
            Block::Table(r) => table(&r, rows),
            Block::Text(t) => shorten(&t.join("\n"), para),
        });
    }
    out.join("\n\n")
}

/// A last resort that never happens with a sane limit: plain text cut at a
/// character boundary.
pub fn cut_plain(text: &str, limit: usize) -> String {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: usize) -> String {
        let mut md = String::from("#### Deploy\n\nintro line\n\n| a | b |\n|---|---|\n");
        for i in 0..rows {
            md.push_str(&format!("| {i} | x |\n"));
        }
        md.push_str("\n```mermaid\nxychart-beta\n  line [1, 2]\n```\n\nlast words\n");
        md
    }

    #[test]
    fn every_level_keeps_whole_rows_and_says_what_it_left_out() {
        let md = report(100);
        assert_eq!(summarise(&md, 0), md);
        let one = summarise(&md, 1);
        assert!(!one.contains("xychart-beta") && one.contains("chart was left out"));
        assert!(one.contains("| 99 | x |"));
        let two = summarise(&md, 2);
        assert!(two.contains("| 19 | x |") && !two.contains("| 20 | x |"));
        assert!(two.contains("… and 80 more rows"));
        let four = summarise(&md, 4);
        assert!(four.contains("A table of 100 rows was left out"));
        assert!(!four.contains("| 0 | x |"));
        for s in [&one, &two, &summarise(&md, 3), &four] {
            assert!(s.contains("intro line") && s.contains("last words"));
            for line in s.lines().filter(|l| l.starts_with('|')) {
                assert_eq!(line.matches('|').count(), 3, "{line}");
            }
        }
        let last = summarise(&md, LAST_LEVEL);
        assert!(last.starts_with("#### Deploy\n\n_Left out"));
    }

    #[test]
    fn short_tables_and_paragraphs_are_kept_as_they_are() {
        let md = report(3);
        assert!(summarise(&md, 3).contains("| 2 | x |"));
        assert!(!summarise(&md, 3).contains("more rows"));
        assert_eq!(shorten("one two three", 8), "one two …");
        assert_eq!(cut_plain("éé", 3), "é");
    }
}
