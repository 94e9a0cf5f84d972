//! Property tests: no input makes the config parser, the input parsers or the
//! event reader panic, and every config error that has a position points inside
//! the text.

use std::path::Path;

use mlcd::config::values::{DurationSpec, Gate, ImageRef, Percent, RegistryRef, Steps, Tag};
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "model",
    "backend",
    "build",
    "train",
    "deploy",
    "registry",
    "sagemaker",
    "context",
    "dockerfile",
    "args",
    "instance",
    "hyperparameters",
    "channels",
    "timeout",
    "gates",
    "strategy",
    "steps",
    "smoke",
    "request",
    "expect-status",
    "max-latency",
    "type",
    "region",
    "role-arn",
    "endpont",
];
const SCALARS: &[&str] = &[
    "churn",
    "local",
    "canary",
    "90m",
    "-1",
    "150",
    "0.5",
    "true",
    "~",
    "\"\"",
    "[10, 50]",
    "{a: 1}",
    ">= 0.9",
    "gpu.t4.xl",
    "'x: y'",
    "&a",
    "*a",
    "!!binary aGk=",
    "|",
    ">-",
    "[",
    "}",
    "\t",
    "%",
];

fn yaml_doc() -> impl Strategy<Value = String> {
    let line = (
        0usize..4,
        prop::sample::select(KEYS),
        prop::sample::select(SCALARS),
        any::<bool>(),
    )
        .prop_map(|(indent, k, v, dash)| {
            format!(
                "{}{}{k}: {v}",
                "  ".repeat(indent),
                if dash { "- " } else { "" }
            )
        });
    prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
}

fn check_config(text: &str) {
    if let Err(e) = mlcd::config::parse(text, Path::new("mlcd.yml")) {
        assert!(!e.message.is_empty());
        if let Some(l) = e.location {
            let lines = text.lines().count().max(1);
            assert!(
                l.line >= 1 && l.line <= lines + 1,
                "line {} of {lines}: {}",
                l.line,
                e.message
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_config(&text);
    }

    #[test]
    fn config_parser_never_panics_on_yaml_shaped_text(text in yaml_doc()) {
        check_config(&text);
    }

    #[test]
    fn value_parsers_never_panic(s in any::<String>()) {
        let _ = s.parse::<DurationSpec>();
        let _ = s.parse::<Percent>();
        let _ = s.parse::<Steps>();
        let _ = s.parse::<Gate>();
        let _ = s.parse::<ImageRef>();
        let _ = s.parse::<RegistryRef>();
        let _ = s.parse::<Tag>();
        let _ = Tag::sanitized(&s);
        let _ = mlcd::config::locate::key_position(&s, &["build", "dockerfile"]);
    }

    #[test]
    fn image_refs_that_parse_print_back_the_same(s in "[a-z0-9.:]{1,12}(/[a-z0-9_.-]{1,8}){0,2}(:[A-Za-z0-9_.-]{1,10})?") {
        if let Ok(r) = s.parse::<ImageRef>() {
            prop_assert_eq!(r.to_string(), s);
        }
    }
}
