//! Labels added to a built image without a commit: the image's config is rebuilt
//! from what the engine reports (inspect and history), the labels merged in, and
//! loaded back as an archive holding only that config — the engine already has
//! every layer, so nothing is copied. A LABEL instruction would be a commit, and
//! under a copying storage driver (vfs) every commit copies the root filesystem.

use std::collections::BTreeMap;

use bollard::models::{ImageHistoryResponseItem, ImageInspect};
use sha2::{Digest as _, Sha256};

/// The image config (OCI / Docker image JSON) of `inspect` with `labels` merged
/// into `config.Labels` (equal keys replaced). None when the engine did not say
/// enough to rebuild it (no layers, or no platform).
pub fn labelled_config(
    inspect: &ImageInspect,
    history: &[ImageHistoryResponseItem],
    labels: &BTreeMap<String, String>,
) -> Option<Vec<u8>> {
    let diff_ids = inspect.root_fs.as_ref()?.layers.clone()?;
    if diff_ids.is_empty() {
        return None;
    }
    let mut config = serde_json::to_value(inspect.config.clone().unwrap_or_default()).ok()?;
    if !config["Labels"].is_object() {
        config["Labels"] = serde_json::json!({});
    }
    for (k, v) in labels {
        config["Labels"][k.as_str()] = v.clone().into();
    }
    let mut image = serde_json::json!({
        "architecture": inspect.architecture.clone()?,
        "os": inspect.os.clone()?,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let optional = [
        ("variant", inspect.variant.clone()),
        ("os.version", inspect.os_version.clone()),
        ("author", inspect.author.clone()),
        ("comment", inspect.comment.clone()),
        (
            "created",
            inspect
                .created
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(str::to_string)),
        ),
    ];
    for (key, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            image[key] = v.into();
        }
    }
    if let Some(h) = rebuilt_history(history, diff_ids_len(&image)) {
        image["history"] = h;
    }
    serde_json::to_vec(&image).ok()
}

fn diff_ids_len(image: &serde_json::Value) -> usize {
    image["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len)
}

/// The config's `history` from the engine's history listing (newest first):
/// which entries made a layer is read from their size and instruction, and the
/// history is left out (it is optional) unless that accounts for every layer.
fn rebuilt_history(
    history: &[ImageHistoryResponseItem],
    layers: usize,
) -> Option<serde_json::Value> {
    let entries: Vec<serde_json::Value> = history
        .iter()
        .rev()
        .map(|h| {
            let nop = h.created_by.contains("#(nop) ");
            let copies =
                h.created_by.contains("#(nop) COPY") || h.created_by.contains("#(nop) ADD");
            let empty = h.size == 0 && nop && !copies;
            let mut e = serde_json::json!({ "created_by": h.created_by });
            if let Some(t) = chrono::DateTime::from_timestamp(h.created, 0) {
                e["created"] = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into();
            }
            if !h.comment.is_empty() {
                e["comment"] = h.comment.clone().into();
            }
            if empty {
                e["empty_layer"] = true.into();
            }
            e
        })
        .collect();
    let made = entries.iter().filter(|e| e["empty_layer"] != true).count();
    (made == layers).then_some(serde_json::Value::Array(entries))
}

/// The sha256 image id of a config.
pub fn image_id(config: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(config))
}

/// A `docker load` archive (the `manifest.json` format) holding only `config`,
/// tagged `name`; its layer entries name files the archive does not hold, which
/// the engine never opens because it has those layers.
pub fn config_only_archive(config: &[u8], name: &str, layers: usize) -> std::io::Result<Vec<u8>> {
    let id = image_id(config);
    let hex = id.trim_start_matches("sha256:");
    let config_file = format!("{hex}.json");
    let manifest = serde_json::json!([{
        "Config": config_file,
        "RepoTags": [name],
        "Layers": (0..layers).map(|i| format!("layer{i}/layer.tar")).collect::<Vec<_>>(),
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("JSON");
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [(config_file.as_str(), config), ("manifest.json", &manifest)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, data)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ImageConfig, ImageInspectRootFs};

    fn item(created_by: &str, size: i64) -> ImageHistoryResponseItem {
        ImageHistoryResponseItem {
            id: "<missing>".into(),
            created: 1_700_000_000,
            created_by: created_by.into(),
            tags: vec![],
            size,
            comment: String::new(),
        }
    }

    fn inspect() -> ImageInspect {
        ImageInspect {
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
            config: Some(ImageConfig {
                env: Some(vec!["A=1".into()]),
                exposed_ports: Some(vec!["8080/tcp".into()]),
                labels: Some([("keep".to_string(), "1".to_string())].into()),
                ..Default::default()
            }),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".into(),
                layers: Some(vec!["sha256:aa".into(), "sha256:bb".into()]),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn labels_merge_into_the_rebuilt_config() {
        let history = [
            item("/bin/sh -c #(nop)  CMD [\"serve\"]", 0),
            item("/bin/sh -c #(nop) COPY dir:abc in /opt/program ", 5000),
            item("/bin/sh -c #(nop)  ENV A=1", 0),
            item("/bin/sh -c #(nop) ADD file:base in / ", 0),
        ];
        let labels = BTreeMap::from([("dev.mlcd.build-id".to_string(), "b1".to_string())]);
        let bytes = labelled_config(&inspect(), &history, &labels).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            c["config"]["Labels"],
            serde_json::json!({"keep": "1", "dev.mlcd.build-id": "b1"})
        );
        assert_eq!(
            c["config"]["ExposedPorts"],
            serde_json::json!({"8080/tcp": {}})
        );
        assert_eq!(c["config"]["Env"], serde_json::json!(["A=1"]));
        assert_eq!(
            c["rootfs"]["diff_ids"],
            serde_json::json!(["sha256:aa", "sha256:bb"])
        );
        // Oldest first; the ADD of an empty base still made a layer.
        let h = c["history"].as_array().unwrap();
        assert_eq!(h.len(), 4);
        assert!(h[0]["created_by"].as_str().unwrap().contains("ADD"));
        assert_eq!(h[0].get("empty_layer"), None);
        assert_eq!(h[1]["empty_layer"], true);
        assert_eq!(h[3]["empty_layer"], true);
        assert_eq!(h[3]["created"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_history_that_does_not_account_for_every_layer_is_left_out() {
        let history = [item("/bin/sh -c #(nop)  CMD [\"serve\"]", 0)];
        let bytes = labelled_config(&inspect(), &history, &BTreeMap::new()).unwrap();
        let c: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(c.get("history"), None);
    }

    #[test]
    fn the_archive_holds_the_config_and_a_manifest_naming_it() {
        let config = br#"{"a":1}"#;
        let bytes = config_only_archive(config, "churn:build-1", 2).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let hex = image_id(config).trim_start_matches("sha256:").to_string();
        assert_eq!(
            names,
            vec![format!("{hex}.json"), "manifest.json".to_string()]
        );
    }
}
