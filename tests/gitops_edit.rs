//! GitOps edits on manifests as teams keep them (fixtures/gitops/): only the
//! changed values move, an edit and its reverse give the original bytes back,
//! and the real `kubectl kustomize` builds the edited kustomization.

use std::path::Path;
use std::process::Command;

use mlcd::config::values::KeySource;
use mlcd::gitops::edit::flux::FluxEditor;
use mlcd::gitops::edit::keys::{KeysEditor, HELM_DEFAULT_KEYS};
use mlcd::gitops::edit::kustomize::KustomizeEditor;
use mlcd::gitops::edit::{Change, Edited, Editor};

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gitops")
            .join(rel),
    )
    .unwrap()
}

fn change(tag: &str, hex: char) -> Change {
    Change {
        model: "churn".into(),
        version: format!("v-{tag}"),
        repository: "127.0.0.1:5000/churn".into(),
        tag: Some(tag.into()),
        digest: Some(format!("sha256:{}", hex.to_string().repeat(64))),
        storage_uri: None,
        traffic: Some(10),
    }
}

fn apply(ed: &dyn Editor, text: &str, c: &Change) -> String {
    match ed.edit("f.yaml", Some(text), c).unwrap() {
        Edited::Changed { text, .. } => text,
        Edited::Unchanged => text.to_string(),
    }
}

/// Lines of `a` and `b` that differ (same line count expected).
fn differing(a: &str, b: &str) -> Vec<(String, String)> {
    assert_eq!(a.lines().count(), b.lines().count(), "{a}\n---\n{b}");
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect()
}

fn editors() -> Vec<(&'static str, Box<dyn Editor>)> {
    vec![
        (
            "kustomize/kustomization.yaml",
            Box::new(KustomizeEditor { name: None }),
        ),
        (
            "helm/values.yaml",
            Box::new(KeysEditor {
                format: "helm",
                keys: HELM_DEFAULT_KEYS
                    .iter()
                    .map(|(p, s)| (p.to_string(), *s))
                    .collect(),
            }),
        ),
        ("flux/churn.yaml", Box::new(FluxEditor { policy: None })),
        (
            "kserve/churn.yaml",
            Box::new(KeysEditor {
                format: "yaml",
                keys: vec![
                    (
                        "spec.predictor.containers[0].image".into(),
                        KeySource::Image,
                    ),
                    (
                        "spec.predictor.canaryTrafficPercent".into(),
                        KeySource::Traffic,
                    ),
                ],
            }),
        ),
    ]
}

#[test]
fn every_format_round_trips_byte_for_byte_and_changes_only_its_values() {
    for (file, ed) in editors() {
        let original = fixture(file);
        let a = change("v1", 'a');
        let b = change("v2", 'b');
        let t1 = apply(ed.as_ref(), &original, &a);
        // Nothing to change → nothing changes, to the byte.
        assert_eq!(
            ed.edit(file, Some(&t1), &a).unwrap(),
            Edited::Unchanged,
            "{file}"
        );
        let t2 = apply(ed.as_ref(), &t1, &b);
        assert_ne!(t1, t2, "{file}");
        // Every line that differs holds one of the new values.
        for (before, after) in differing(&t1, &t2) {
            assert!(
                after.contains("v2") || after.contains(&"b".repeat(64)),
                "{file}: unexpected change {before:?} → {after:?}"
            );
            // The comment after the value survives.
            if let Some((_, comment)) = before.split_once(" #") {
                assert!(
                    after.ends_with(comment),
                    "{file}: comment lost in {after:?}"
                );
            }
        }
        // And back: the exact bytes of before.
        assert_eq!(apply(ed.as_ref(), &t2, &a), t1, "{file}");
        // Comment lines are all still there.
        let comments = |t: &str| {
            t.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
        };
        assert_eq!(comments(&t2), comments(&original), "{file}");
    }
}

#[test]
fn kubectl_kustomize_builds_the_edited_kustomization() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["kustomization.yaml", "deployment.yaml"] {
        std::fs::write(dir.path().join(f), fixture(&format!("kustomize/{f}"))).unwrap();
    }
    let c = change("3f9a2c1", 'd');
    let ed = KustomizeEditor { name: None };
    let Edited::Changed { text, changes } = ed
        .edit(
            "kustomization.yaml",
            Some(&fixture("kustomize/kustomization.yaml")),
            &c,
        )
        .unwrap()
    else {
        panic!("expected a change")
    };
    assert_eq!(
        changes,
        vec![
            "images[churn].newTag: v1 → 3f9a2c1".to_string(),
            format!("images[churn].digest: (unset) → sha256:{}", "d".repeat(64)),
        ]
    );
    std::fs::write(dir.path().join("kustomization.yaml"), &text).unwrap();
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("kubectl runs");
    let built = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        built.contains(&format!(
            "image: 127.0.0.1:5000/churn:3f9a2c1@sha256:{}",
            "d".repeat(64)
        )),
        "{built}"
    );
    assert!(built.contains("image: busybox:1.36"), "{built}");
    assert!(built.contains("team: ml-platform"), "{built}");
}

#[test]
fn a_helm_key_path_that_is_not_there_is_refused_with_file_and_line() {
    let ed = KeysEditor {
        format: "helm",
        keys: vec![("model.image.tag".into(), KeySource::Tag)],
    };
    let err = ed
        .edit(
            "charts/churn/values.yaml",
            Some(&fixture("helm/values.yaml")),
            &change("v2", 'b'),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "charts/churn/values.yaml:1: `model.image.tag` is not in the file"
    );
    let ed = KeysEditor {
        format: "helm",
        keys: vec![("image.sha".into(), KeySource::Digest)],
    };
    let err = ed
        .edit(
            "values.yaml",
            Some(&fixture("helm/values.yaml")),
            &change("v2", 'b'),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "values.yaml:4: `image.sha` is not in the file: `image` (line 4) has no `sha`"
    );
}

mod properties {
    use mlcd::gitops::edit::yaml_text::{self, Value};
    use proptest::prelude::*;

    const DOC: &str = "# values\nimage:\n  repository: r   # plain\n  tag: \"t\"   # double\n  digest: 'd'   # single\nlist: [a, \"b\"]\nafter: kept\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever string is written into any scalar, in any quoting, YAML
        /// (saphyr, and serde_yaml as Go tools' stand-in) reads back exactly that
        /// string, and nothing else in the file moves.
        #[test]
        fn any_string_spliced_reads_back_and_the_rest_stays(
            value in "[ -~]{0,30}",
            path in prop::sample::select(vec!["image.repository", "image.tag", "image.digest", "list[0]", "list[1]", "after"]),
        ) {
            let docs = yaml_text::parse(DOC).unwrap();
            let steps = yaml_text::parse_path(path).unwrap();
            let node = yaml_text::find(&docs[0], &steps).ok().unwrap();
            let (start, end) = (node.start, node.end);
            let Some(out) = yaml_text::splice(DOC, node, &Value::Str(value.clone())).unwrap() else {
                prop_assert_eq!(node.scalar().unwrap(), value.as_str());
                return Ok(());
            };
            let reread = yaml_text::parse(&out).unwrap();
            let got = yaml_text::find(&reread[0], &steps).ok().unwrap();
            prop_assert_eq!(got.scalar().unwrap(), value.as_str());
            let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
            let mut cur = &v;
            for s in &steps {
                cur = match s {
                    yaml_text::Step::Key(k) => &cur[k.as_str()],
                    yaml_text::Step::Index(i) => &cur[*i],
                };
            }
            prop_assert_eq!(cur.as_str(), Some(value.as_str()), "{}", out);
            // Everything before and after the scalar is the original text.
            prop_assert_eq!(&out[..start], &DOC[..start]);
            prop_assert_eq!(&out[out.len() - (DOC.len() - end)..], &DOC[end..]);
        }
    }
}
