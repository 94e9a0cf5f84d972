//! Typed values shared by the config file and the inputs: each parses from text with
//! `FromStr`, says exactly what it expected when it cannot, and describes itself in
//! the JSON schema.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Deserialize` (from a YAML/JSON string, or a number where noted), `Serialize`
/// (as the display string) and `JsonSchema` for a type with `FromStr` + `Display`.
macro_rules! text_value {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = d.deserialize_any(TextVisitor($name))?;
                s.parse().map_err(de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// Reads a scalar as text; numbers and booleans become their text so the
/// type's `FromStr` gives the one error message.
struct TextVisitor(&'static str);

impl Visitor<'_> for TextVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {}", self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A model's slug: it names images, jobs, endpoints and registry entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(String);

impl ModelId {
    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ModelId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if is_slug(s, 40) {
            Ok(ModelId(s.to_string()))
        } else {
            Err(format!(
                "expected a model id of lowercase letters, digits and hyphens, 1 to 40 characters, \
                 not starting or ending with a hyphen (it names images, jobs and endpoints, \
                 which is why it is this strict), found `{s}`"
            ))
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_value!(ModelId, "ModelId", {
    "type": "string",
    "description": "Lowercase letters, digits and hyphens, 1 to 40 characters.",
    "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
});

/// A duration written with a unit: `90m`, `2h`, `1h30m`, `500ms`, `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationSpec(pub Duration);

impl FromStr for DurationSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "expected a duration with a unit, like `90m`, `2h`, `45s` or `500ms`, found `{s}` \
                 (a bare number is ambiguous: add the unit)"
            ));
        }
        match humantime::parse_duration(t) {
            Ok(d) if d.is_zero() => Err(format!("expected a duration above zero, found `{s}`")),
            Ok(d) => Ok(DurationSpec(d)),
            Err(_) => Err(format!(
                "expected a duration like `90m`, `2h`, `1h30m`, `45s` or `500ms`, found `{s}`"
            )),
        }
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

text_value!(DurationSpec, "Duration", {
    "type": "string",
    "description": "A duration with a unit: `90m`, `2h`, `1h30m`, `45s`, `500ms`.",
    "pattern": "^\\s*([0-9]+\\s*(ns|us|ms|s|sec|secs|m|min|mins|h|hr|hrs|d|days?)\\s*)+$"
});

/// A traffic percentage, a whole number from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u8);

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_end_matches('%');
        match t.parse::<i64>() {
            Ok(n) if (0..=100).contains(&n) => Ok(Percent(n as u8)),
            Ok(n) => Err(format!(
                "expected a traffic percentage from 0 to 100, found {n}"
            )),
            Err(_) => Err(format!(
                "expected a traffic percentage, a whole number from 0 to 100, found `{s}`"
            )),
        }
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_any(TextVisitor("percentage"))?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Percent")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 0, "maximum": 100,
            "description": "A traffic percentage from 0 to 100."})
    }
}

/// Traffic steps for a canary or linear rollout: strictly increasing percentages
/// from 1 to 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Steps(pub Vec<Percent>);

impl Steps {
    /// Checks that the steps rise strictly and stay within 1..=100.
    pub fn new(steps: Vec<Percent>) -> Result<Self, String> {
        if steps.is_empty() {
            return Err("expected at least one traffic step, like [10, 50, 100]".into());
        }
        if steps[0].0 == 0 {
            return Err("the first traffic step must be above 0%".into());
        }
        for w in steps.windows(2) {
            if w[1] <= w[0] {
                return Err(format!(
                    "traffic steps must increase, but {}% follows {}%: write them in rising order, like [10, 50, 100]",
                    w[1], w[0]
                ));
            }
        }
        Ok(Steps(steps))
    }
}

impl FromStr for Steps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Result<Vec<Percent>, String> = s
            .split([',', ' ', '/', ';'])
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect();
        Steps::new(parts?)
    }
}

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<Percent>::deserialize(d)?;
        Steps::new(v).map_err(de::Error::custom)
    }
}

impl JsonSchema for Steps {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Steps")
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let item = g.subschema_for::<Percent>();
        json_schema!({"type": "array", "items": item, "minItems": 1,
            "description": "Strictly increasing traffic percentages, like [10, 50, 100]."})
    }
}

/// Declares a kebab-case enum parsed from text with a "did you mean" error.
macro_rules! word_enum {
    ($(#[$m:meta])* $ty:ident, $name:literal, { $($(#[$vm:meta])* $var:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($(#[$vm])* $var),+ }

        impl $ty {
            /// Every accepted spelling.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$var => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($text => Ok($ty::$var),)+
                    other => Err(crate::config::suggest::unknown_word($name, other, Self::NAMES)),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = d.deserialize_any(TextVisitor($name))?;
                s.parse().map_err(de::Error::custom)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> { Cow::Borrowed(stringify!($ty)) }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "enum": Self::NAMES})
            }
        }
    };
}

word_enum!(
    /// The mode a run acts in.
    Mode, "mode", {
        /// Build the model image and push it.
        Build = "build",
        /// Train the model on an instance type.
        Train = "train",
        /// Deploy the model behind an endpoint.
        Deploy = "deploy",
        /// Check recent data for drift and the model's quality.
        Monitor = "monitor",
    }
);

word_enum!(
    /// How a column's drift is measured (`auto`: Evidently's choice by type and size).
    DriftMethod, "drift method", {
        /// Evidently's defaults: up to 1000 reference rows KS (numbers) or
        /// chi-squared / z-test (categories); more: normed Wasserstein (numbers)
        /// or Jensen-Shannon (categories).
        Auto = "auto",
        /// Two-sample Kolmogorov-Smirnov p-value (drift below 0.05).
        Ks = "ks",
        /// Wasserstein distance in reference standard deviations (drift at 0.1).
        Wasserstein = "wasserstein",
        /// Population stability index (drift at 0.1).
        Psi = "psi",
        /// Jensen-Shannon distance (drift at 0.1).
        Jensenshannon = "jensenshannon",
        /// Chi-squared p-value (drift below 0.05).
        Chisquare = "chisquare",
        /// Two-proportion z-test p-value, for two categories (drift below 0.05).
        Z = "z",
        /// L-infinity distance between category shares (drift at 0.1).
        Linf = "linf",
    }
);

word_enum!(
    /// What `mode: monitor` does when it finds drift or degraded quality.
    OnDrift, "on-drift", {
        /// Report it (outputs, summary, check run) and succeed.
        Report = "report",
        /// Report it and fail the step (exit 1).
        Fail = "fail",
        /// Report it and send a `repository_dispatch` (retraining).
        Dispatch = "dispatch",
    }
);

word_enum!(
    /// Where the quality check gets the model's predictions for labelled recent data.
    PredictionsFrom, "predictions-from", {
        /// A column of the recent data (`monitor.predictions`).
        Column = "column",
        /// The live endpoint, asked for each labelled row (bounded, rate-limited).
        Endpoint = "endpoint",
        /// The endpoint's captured responses, joined to the labelled rows by
        /// inference id (no extra load on the endpoint).
        Capture = "capture",
    }
);

word_enum!(
    /// The type a monitored column is analysed as.
    ColumnType, "column type", {
        /// Numbers.
        Numeric = "numeric",
        /// Categories.
        Categorical = "categorical",
    }
);

word_enum!(
    /// Where jobs and endpoints run.
    Backend, "backend", {
        /// The Docker engine on this machine (the embedded default).
        Local = "local",
        /// Amazon SageMaker.
        Sagemaker = "sagemaker",
        /// Google Vertex AI.
        Vertex = "vertex",
        /// Kubernetes with Kubeflow Trainer and KServe.
        Kubernetes = "kubernetes",
    }
);

word_enum!(
    /// How a new version takes traffic.
    Strategy, "strategy", {
        /// Switch all traffic at once.
        AllAtOnce = "all-at-once",
        /// A small share first, then the rest in steps.
        Canary = "canary",
        /// Equal steps at a fixed interval.
        Linear = "linear",
        /// Start the new fleet, verify it, switch, then stop the old one.
        BlueGreen = "blue-green",
        /// The candidate gets a copy of the traffic and answers nobody.
        Shadow = "shadow",
    }
);

word_enum!(
    /// The model registry that records trained versions.
    RegistryType, "registry type", {
        /// A directory on this machine (the embedded default).
        Local = "local",
        /// An MLflow tracking server's model registry.
        Mlflow = "mlflow",
        /// SageMaker model package groups.
        Sagemaker = "sagemaker",
        /// The Vertex AI Model Registry (models with versions and aliases).
        Vertex = "vertex",
    }
);

word_enum!(
    /// The inference protocol a serving container speaks.
    Protocol, "protocol", {
        /// `GET /ping`, `POST /invocations` on port 8080.
        Sagemaker = "sagemaker",
        /// Open Inference Protocol v2: `/v2/health/ready`, `/v2/models/{m}/infer`.
        V2 = "v2",
    }
);

word_enum!(
    /// Qwak's `deploy-type`: only realtime endpoints exist in mlcd.
    DeployType, "deploy-type", {
        /// A realtime endpoint.
        Realtime = "realtime",
        /// Batch inference (not supported).
        Batch = "batch",
        /// Streaming inference (not supported).
        Stream = "stream",
    }
);

word_enum!(
    /// What happens to a remote job when mlcd stops waiting for it.
    OnStop, "job policy", {
        /// Stop the job.
        Stop = "stop",
        /// Leave it running; attach to it later.
        Leave = "leave",
    }
);

word_enum!(
    /// How a GitOps deploy writes the new version into the manifests repository.
    GitopsFormat, "deploy.gitops.format", {
        /// A kustomization's `images:` entry (newName, newTag, digest).
        Kustomize = "kustomize",
        /// A Helm values file (keys from `deploy.gitops.keys`).
        Helm = "helm",
        /// Fields of a YAML file set by path (`deploy.gitops.keys`).
        Yaml = "yaml",
        /// Flux image-automation setter markers (`# {"$imagepolicy": "ns:name"}`).
        Flux = "flux",
        /// The objects of `mlcd render deploy`, written into a directory.
        Manifests = "manifests",
    }
);

word_enum!(
    /// Which value of the deploy a GitOps key receives.
    KeySource, "deploy.gitops.keys value", {
        /// The full image reference `repository[:tag][@digest]`.
        Image = "image",
        /// The image repository with its host.
        Repository = "repository",
        /// The image tag.
        Tag = "tag",
        /// The image digest `sha256:…`.
        Digest = "digest",
        /// The model version id.
        Version = "version",
        /// `kubernetes.storage-uri`.
        StorageUri = "storage-uri",
        /// The traffic share of the current step (a number).
        Traffic = "traffic",
    }
);

/// An instance type: a portable name (`cpu.small`, `gpu.t4.xl`, …) mapped per
/// backend, or a backend's native type (`ml.g5.xlarge`, `n1-standard-8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceType(String);

impl InstanceType {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstanceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
        if ok {
            Ok(InstanceType(t.to_string()))
        } else {
            Err(format!(
                "expected an instance type such as `cpu.small`, `gpu.t4.xl` or a native type like \
                 `ml.m5.xlarge`, found `{s}`"
            ))
        }
    }
}

impl fmt::Display for InstanceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_value!(InstanceType, "InstanceType", {
    "type": "string",
    "description": "A portable name (cpu.small, cpu.medium, cpu.large, gpu.t4.xl, gpu.a10g.xl, gpu.a100.8xl) or a backend's native type (Vertex AI: a machine type, or MACHINE+ACCELERATOR like g2-standard-8+NVIDIA_L4).",
    "pattern": "^[A-Za-z0-9._+-]{1,64}$"
});

/// An image tag: up to 128 characters of letters, digits, `_`, `.` and `-`,
/// not starting with `.` or `-` (Docker's rule).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A tag made from arbitrary text (a branch name) the way docker/metadata-action
    /// does: disallowed characters become `-`.
    pub fn sanitized(text: &str) -> Option<Tag> {
        let mut s: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        while s.starts_with(['.', '-']) {
            s.remove(0);
        }
        s.truncate(128);
        s.parse().ok()
    }
}

impl FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with(['.', '-'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(format!(
                "expected an image tag of letters, digits, `_`, `.` and `-` (at most 128, not \
                 starting with `.` or `-`), found `{s}`"
            ))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_value!(Tag, "Tag", {
    "type": "string",
    "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
});

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    name_ok && port_ok
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn valid_path_component(c: &str) -> bool {
    // Docker: lowercase alphanumerics separated by `.`, `_`, `__` or `-`.
    !c.is_empty()
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        })
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

/// Where images are pushed: a registry host with an optional namespace,
/// like `ghcr.io/acme`, `127.0.0.1:5000` or `123456789012.dkr.ecr.us-east-1.amazonaws.com/ml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `host[:port]`.
    pub host: String,
    /// The namespace under the host, possibly empty.
    pub namespace: String,
}

impl RegistryRef {
    /// The image repository for a model under this registry.
    pub fn repository(&self, model: &ModelId) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.host, model)
        } else {
            format!("{}/{}/{}", self.host, self.namespace, model)
        }
    }
}

impl FromStr for RegistryRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_end_matches('/');
        let t = t
            .strip_prefix("https://")
            .or_else(|| t.strip_prefix("http://"))
            .map_or(t, |rest| rest);
        let (host, ns) = t.split_once('/').unwrap_or((t, ""));
        let expect = "expected a registry host with an optional namespace, like `ghcr.io/acme`, \
                      `docker.io/acme`, `127.0.0.1:5000` or `localhost:5000/team`";
        if !looks_like_host(host) {
            return Err(format!(
                "{expect}, found `{s}` (`{host}` is not a host name: a registry host has a dot, a \
                 port or is `localhost`)"
            ));
        }
        if !valid_host(host) {
            return Err(format!(
                "{expect}, found `{s}` (`{host}` is not a valid host[:port])"
            ));
        }
        if !ns.is_empty() && !ns.split('/').all(valid_path_component) {
            return Err(format!(
                "{expect}, found `{s}` (the namespace `{ns}` must be lowercase letters, digits, `.`, `_` and `-`)"
            ));
        }
        Ok(RegistryRef {
            host: host.to_string(),
            namespace: ns.to_string(),
        })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.host)
        } else {
            write!(f, "{}/{}", self.host, self.namespace)
        }
    }
}

text_value!(RegistryRef, "RegistryRef", {
    "type": "string",
    "description": "A registry host with an optional namespace: ghcr.io/acme, 127.0.0.1:5000."
});

/// A full image reference: `[host/]repository[:tag][@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, when the reference names one.
    pub host: Option<String>,
    /// Repository path under the host.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<Tag>,
    /// Digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let expect = "expected an image reference like `ghcr.io/acme/churn:1.2.0` or \
                      `127.0.0.1:5000/churn@sha256:<64 hex digits>`";
        let t = s.trim();
        let (rest, digest) = match t.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").unwrap_or("");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{expect}, found `{s}` (the digest is not sha256:<64 hex>)"
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (t, None),
        };
        let (host, path) = match rest.split_once('/') {
            Some((first, p)) if looks_like_host(first) => (Some(first), p),
            _ => (None, rest),
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, tag)) => (
                p,
                Some(
                    tag.parse::<Tag>()
                        .map_err(|e| format!("{expect}, found `{s}`: {e}"))?,
                ),
            ),
            None => (path, None),
        };
        if let Some(h) = host {
            if !valid_host(h) {
                return Err(format!(
                    "{expect}, found `{s}` (`{h}` is not a valid host[:port])"
                ));
            }
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(format!(
                "{expect}, found `{s}` (the repository must be lowercase letters, digits, `.`, `_`, `-` and `/`)"
            ));
        }
        Ok(ImageRef {
            host: host.map(str::to_string),
            repository: path.to_string(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = &self.host {
            write!(f, "{h}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

text_value!(ImageRef, "ImageRef", {
    "type": "string",
    "description": "An image reference: [host/]repository[:tag][@sha256:digest]."
});

/// A metric gate such as `>= 0.90` or `< 0.2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The comparison.
    pub op: GateOp,
    /// The threshold.
    pub threshold: f64,
}

/// A gate's comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOp {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
}

impl Gate {
    /// Whether a metric value passes the gate.
    pub fn passes(&self, value: f64) -> bool {
        match self.op {
            GateOp::Ge => value >= self.threshold,
            GateOp::Gt => value > self.threshold,
            GateOp::Le => value <= self.threshold,
            GateOp::Lt => value < self.threshold,
        }
    }
}

impl FromStr for Gate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (op, rest) = [
            (">=", GateOp::Ge),
            ("<=", GateOp::Le),
            (">", GateOp::Gt),
            ("<", GateOp::Lt),
        ]
        .iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r)))
        .ok_or_else(|| {
            format!("expected a gate like `>= 0.90` or `< 0.25` (>=, >, <= or < then a number), found `{s}`")
        })?;
        let threshold: f64 = rest.trim().parse().map_err(|_| {
            format!("expected a number after the comparison in the gate `{s}`, like `>= 0.90`")
        })?;
        if !threshold.is_finite() {
            return Err(format!("the gate `{s}` needs a finite threshold"));
        }
        Ok(Gate { op, threshold })
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            GateOp::Ge => ">=",
            GateOp::Gt => ">",
            GateOp::Le => "<=",
            GateOp::Lt => "<",
        };
        write!(f, "{op} {}", self.threshold)
    }
}

text_value!(Gate, "Gate", {
    "type": "string",
    "description": "A comparison and a threshold: `>= 0.90`, `< 0.25`.",
    "pattern": "^\\s*(>=|<=|>|<)\\s*-?[0-9.eE+-]+\\s*$"
});

/// A hyperparameter or build-argument value: a string, number or boolean. The
/// training container receives it as a string (SageMaker's contract).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar value (a string, number or boolean)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Err(E::custom(
                    "expected a scalar value (a string, number or boolean), found an empty value",
                ))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
                Err(de::Error::custom(
                    "expected a scalar value (a string, number or boolean), found a list: the container receives every value as a string, so write a list as a string such as \"64,128\"",
                ))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
                Err(de::Error::custom(
                    "expected a scalar value (a string, number or boolean), found a mapping: the container receives every value as a string, so flatten it or write it as a JSON string",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Str(v) => s.serialize_str(v),
            Scalar::Int(v) => s.serialize_i64(*v),
            Scalar::Float(v) => s.serialize_f64(*v),
            Scalar::Bool(v) => s.serialize_bool(*v),
        }
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Scalar")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// Parses a boolean the way GitHub's toolkit `getBooleanInput` does: only
/// `true|True|TRUE|false|False|FALSE`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!(
            "expected a boolean, one of `true`, `True`, `TRUE`, `false`, `False`, `FALSE` (as GitHub's toolkit reads them), found `{other}`"
        )),
    }
}

/// A size in bytes written with a unit: `16MB`, `1GiB`, `512KB`, `4096B`
/// (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = (t[..split].trim(), t[split..].trim());
        let expected =
            || format!("expected a size with a unit, like `16MB`, `512KiB` or `1GB`, found `{s}`");
        let n: f64 = num.parse().map_err(|_| expected())?;
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "b" => 1,
            "kb" | "k" => 1000,
            "mb" | "m" => 1000 * 1000,
            "gb" | "g" => 1000 * 1000 * 1000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "" => {
                return Err(format!(
                    "{} (a bare number is ambiguous: add the unit)",
                    expected()
                ))
            }
            _ => return Err(expected()),
        };
        let bytes = n * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(format!("expected a size above zero, found `{s}`"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, scale) in [("GB", 1_000_000_000u64), ("MB", 1_000_000), ("KB", 1000)] {
            if b >= scale && b.is_multiple_of(scale) {
                return write!(f, "{}{unit}", b / scale);
            }
        }
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if b >= scale && b.is_multiple_of(scale) {
                return write!(f, "{}{unit}", b / scale);
            }
        }
        write!(f, "{b}B")
    }
}

text_value!(ByteSize, "ByteSize", {
    "type": "string",
    "description": "A size with a unit: `16MB`, `512KiB`, `1GB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024).",
    "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([kKmMgG]i?[bB]|[bBkKmMgG])\\s*$"
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            "90m".parse::<DurationSpec>().unwrap().0,
            Duration::from_secs(5400)
        );
        assert_eq!(
            "1h30m".parse::<DurationSpec>().unwrap().0,
            Duration::from_secs(5400)
        );
        assert!("90"
            .parse::<DurationSpec>()
            .unwrap_err()
            .contains("add the unit"));
        assert!("soon"
            .parse::<DurationSpec>()
            .unwrap_err()
            .contains("`soon`"));
        assert!("0s".parse::<DurationSpec>().is_err());
    }

    #[test]
    fn percentages_are_bounded() {
        assert_eq!("10".parse::<Percent>().unwrap(), Percent(10));
        assert_eq!("100%".parse::<Percent>().unwrap(), Percent(100));
        assert!("-5".parse::<Percent>().unwrap_err().contains("-5"));
        assert!("150".parse::<Percent>().unwrap_err().contains("0 to 100"));
        assert!("ten".parse::<Percent>().is_err());
    }

    #[test]
    fn steps_must_rise() {
        assert!("10,50,100".parse::<Steps>().is_ok());
        assert!("50,10".parse::<Steps>().unwrap_err().contains("increase"));
        assert!("10,10".parse::<Steps>().is_err());
        assert!("10,150".parse::<Steps>().is_err());
    }

    #[test]
    fn image_references_parse_and_print_back() {
        for s in [
            "ghcr.io/acme/churn:1.2.0",
            "127.0.0.1:5000/churn@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "churn",
            "acme/churn:latest",
        ] {
            assert_eq!(s.parse::<ImageRef>().unwrap().to_string(), s);
        }
        assert!("ghcr.io/Acme/churn".parse::<ImageRef>().is_err());
        assert!("ghcr.io/acme/churn:bad tag".parse::<ImageRef>().is_err());
        assert!("ghcr.io/acme/churn@sha256:short"
            .parse::<ImageRef>()
            .is_err());
    }

    #[test]
    fn registries_need_a_host() {
        let r: RegistryRef = "ghcr.io/acme".parse().unwrap();
        assert_eq!(
            r.repository(&"churn".parse().unwrap()),
            "ghcr.io/acme/churn"
        );
        assert!("localhost:5000".parse::<RegistryRef>().is_ok());
        assert!("acme"
            .parse::<RegistryRef>()
            .unwrap_err()
            .contains("not a host"));
        assert!("ghcr.io:99999/acme".parse::<RegistryRef>().is_err());
        assert!("bad_host.io/acme".parse::<RegistryRef>().is_err());
    }

    #[test]
    fn tags_follow_dockers_rule_and_branches_are_sanitized() {
        assert!("v1.2.3".parse::<Tag>().is_ok());
        assert!("-x".parse::<Tag>().is_err());
        assert!("a/b".parse::<Tag>().is_err());
        assert_eq!(
            Tag::sanitized("feature/new-model").unwrap().as_str(),
            "feature-new-model"
        );
    }

    #[test]
    fn gates_compare() {
        let g: Gate = ">= 0.9".parse().unwrap();
        assert!(g.passes(0.9) && !g.passes(0.89));
        let g: Gate = "<0.25".parse().unwrap();
        assert!(g.passes(0.2) && !g.passes(0.25));
        assert!("about 0.9".parse::<Gate>().is_err());
        assert!(">= high".parse::<Gate>().is_err());
    }

    #[test]
    fn booleans_accept_exactly_the_toolkit_spellings() {
        for t in ["true", "True", "TRUE"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "False", "FALSE"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in ["yes", "1", "tRue", "on"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_need_a_unit() {
        assert_eq!("16MB".parse::<ByteSize>(), Ok(ByteSize(16_000_000)));
        assert_eq!("1 GiB".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize(16_000_000).to_string(), "16MB");
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        let e = "100".parse::<ByteSize>().unwrap_err();
        assert!(e.contains("add the unit"), "{e}");
        assert!("0MB".parse::<ByteSize>().is_err());
        assert!("ten MB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn unknown_words_suggest_the_nearest() {
        let e = "canry".parse::<Strategy>().unwrap_err();
        assert!(e.contains("did you mean `canary`"), "{e}");
    }
}
