//! GitHub workflow commands (`::error file=…::`, `::group::`, `::add-mask::`),
//! escaped exactly as GitHub's toolkit (`@actions/core`) escapes them.

use crate::error::Location;

/// Escapes a command's message: `%`, CR and LF.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value: as data, plus `:` and `,`.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Formats `::name k=v,k=v::message`.
pub fn command(name: &str, props: &[(&str, String)], message: &str) -> String {
    let mut out = format!("::{name}");
    for (i, (k, v)) in props.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        out.push_str(k);
        out.push('=');
        out.push_str(&escape_property(v));
    }
    out.push_str("::");
    out.push_str(&escape_data(message));
    out
}

/// An annotation's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `::notice`
    Notice,
    /// `::warning`
    Warning,
    /// `::error`
    Error,
}

impl Level {
    /// The workflow command's name.
    pub fn command(self) -> &'static str {
        match self {
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// A message attached to a file and line in the run's summary and the check run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Annotation {
    /// Severity.
    pub level: Level,
    /// Short title.
    pub title: String,
    /// The message.
    pub message: String,
    /// Where it points, if anywhere.
    pub location: Option<Location>,
}

impl Annotation {
    /// The workflow command for this annotation.
    pub fn to_command(&self) -> String {
        let mut props: Vec<(&str, String)> = Vec::new();
        if let Some(l) = &self.location {
            props.push(("file", l.file.display().to_string()));
            props.push(("line", l.line.to_string()));
            if let Some(c) = l.column {
                props.push(("col", c.to_string()));
            }
        }
        props.push(("title", self.title.clone()));
        command(self.level.command(), &props, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_toolkit() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
        assert_eq!(
            command(
                "error",
                &[("file", "a,b.yml".into()), ("line", "3".into())],
                "bad: x\ny"
            ),
            "::error file=a%2Cb.yml,line=3::bad: x%0Ay"
        );
        assert_eq!(command("group", &[], "Build"), "::group::Build");
    }

    #[test]
    fn annotations_carry_file_line_and_column() {
        let a = Annotation {
            level: Level::Error,
            title: "mlcd: invalid config".into(),
            message: "unknown key".into(),
            location: Some(Location {
                file: "mlcd.yml".into(),
                line: 4,
                column: Some(3),
            }),
        };
        assert_eq!(
            a.to_command(),
            "::error file=mlcd.yml,line=4,col=3,title=mlcd%3A invalid config::unknown key"
        );
    }
}
