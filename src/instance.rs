//! Portable instance names (`cpu.small`, `gpu.t4.xl`, …) and what each backend
//! runs them on; native types pass through where the backend knows them.

use serde::Serialize;

use crate::config::suggest;
use crate::config::values::{Backend, InstanceType};

/// One portable instance name and its per-backend equivalents.
struct Portable {
    name: &'static str,
    cpus: u32,
    memory_gib: u32,
    gpus: u32,
    sagemaker: &'static str,
    vertex: Option<&'static str>,
}

const PORTABLE: &[Portable] = &[
    Portable {
        name: "cpu.small",
        cpus: 2,
        memory_gib: 8,
        gpus: 0,
        sagemaker: "ml.m5.large",
        vertex: Some("n1-standard-2"),
    },
    Portable {
        name: "cpu.medium",
        cpus: 4,
        memory_gib: 16,
        gpus: 0,
        sagemaker: "ml.m5.xlarge",
        vertex: Some("n1-standard-4"),
    },
    Portable {
        name: "cpu.large",
        cpus: 8,
        memory_gib: 32,
        gpus: 0,
        sagemaker: "ml.m5.2xlarge",
        vertex: Some("n1-standard-8"),
    },
    Portable {
        name: "gpu.t4.xl",
        cpus: 4,
        memory_gib: 16,
        gpus: 1,
        sagemaker: "ml.g4dn.xlarge",
        vertex: Some("n1-standard-4+NVIDIA_TESLA_T4"),
    },
    Portable {
        name: "gpu.a10g.xl",
        cpus: 4,
        memory_gib: 16,
        gpus: 1,
        sagemaker: "ml.g5.xlarge",
        vertex: None,
    },
    Portable {
        name: "gpu.a100.8xl",
        cpus: 96,
        memory_gib: 1152,
        gpus: 8,
        sagemaker: "ml.p4d.24xlarge",
        vertex: Some("a2-highgpu-8g+NVIDIA_TESLA_A100"),
    },
];

/// An instance type resolved for a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resolved {
    /// As the user wrote it.
    pub requested: String,
    /// What the backend is asked for.
    pub native: String,
    /// GPUs requested.
    pub gpus: u32,
    /// CPUs (portable names only; native types leave it to the backend).
    pub cpus: Option<u32>,
    /// Memory in GiB (portable names only).
    pub memory_gib: Option<u32>,
}

/// Portable names, for messages and docs.
pub fn portable_names() -> Vec<&'static str> {
    PORTABLE.iter().map(|p| p.name).collect()
}

/// Resolves an instance type for a backend, or says why it cannot run there.
pub fn resolve(instance: &InstanceType, backend: Backend) -> Result<Resolved, String> {
    let name = instance.as_str();
    if let Some(p) = PORTABLE.iter().find(|p| p.name == name) {
        let native = match backend {
            Backend::Local => {
                if p.gpus > 0 {
                    format!("docker: {} GPU(s)", p.gpus)
                } else {
                    format!("docker: {} CPUs, {} GiB", p.cpus, p.memory_gib)
                }
            }
            Backend::Sagemaker => p.sagemaker.to_string(),
            Backend::Vertex => p
                .vertex
                .ok_or_else(|| format!("`{name}` has no equivalent on Vertex AI: use a native machine type such as `g2-standard-4`"))?
                .to_string(),
            Backend::Kubernetes => {
                if p.gpus > 0 {
                    format!("cpu={} memory={}Gi nvidia.com/gpu={}", p.cpus, p.memory_gib, p.gpus)
                } else {
                    format!("cpu={} memory={}Gi", p.cpus, p.memory_gib)
                }
            }
        };
        return Ok(Resolved {
            requested: name.to_string(),
            native,
            gpus: p.gpus,
            cpus: Some(p.cpus),
            memory_gib: Some(p.memory_gib),
        });
    }
    let names = portable_names();
    let unknown = |what: &str| {
        let mut m = suggest::unknown_word(&format!("instance type for {what}"), name, &names);
        m.push_str(" or a native type");
        m
    };
    if name.starts_with("cpu.") || name.starts_with("gpu.") {
        return Err(unknown(backend.as_str()));
    }
    let native_ok = match backend {
        Backend::Local => false,
        Backend::Sagemaker => name.starts_with("ml.") || name == "local" || name == "local_gpu",
        Backend::Vertex => name.contains('-') && !name.starts_with("ml."),
        // Kubernetes has no instance types: a portable name says the resources.
        Backend::Kubernetes => false,
    };
    if !native_ok {
        return Err(match backend {
            Backend::Local => format!(
                "`{name}` is not a portable instance name: the local backend takes one of {}",
                names.join(", ")
            ),
            Backend::Kubernetes => format!("`{name}` is not a portable instance name: on Kubernetes an instance is the CPU, memory and GPUs of one of {}", names.join(", ")),
            Backend::Sagemaker => format!("`{name}` is not a SageMaker instance type (they start with `ml.`, like `ml.m5.xlarge`) nor one of {}", names.join(", ")),
            _ => unknown(backend.as_str()),
        });
    }
    Ok(Resolved {
        requested: name.to_string(),
        native: name.to_string(),
        gpus: 0,
        cpus: None,
        memory_gib: None,
    })
}

/// The container resources a Kubernetes instance stands for: the resolved
/// native string (`cpu=4 memory=16Gi nvidia.com/gpu=1`, separated by spaces or
/// commas) as resource name → quantity.
pub fn kubernetes_resources(native: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in native.split([' ', ',']).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` in `{native}` is not `resource=quantity`"))?;
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
        let qty_ok = !v.is_empty()
            && v.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'.')
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
        if !name_ok || !qty_ok {
            return Err(format!(
                "`{part}` in `{native}` is not `resource=quantity` (like `memory=16Gi`)"
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    if out.is_empty() {
        return Err(format!("`{native}` names no resources"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(s: &str) -> InstanceType {
        s.parse().unwrap()
    }

    #[test]
    fn portable_names_map_per_backend() {
        assert_eq!(
            resolve(&it("gpu.t4.xl"), Backend::Sagemaker)
                .unwrap()
                .native,
            "ml.g4dn.xlarge"
        );
        assert_eq!(resolve(&it("gpu.t4.xl"), Backend::Local).unwrap().gpus, 1);
        assert_eq!(
            resolve(&it("ml.g5.2xlarge"), Backend::Sagemaker)
                .unwrap()
                .native,
            "ml.g5.2xlarge"
        );
    }

    #[test]
    fn kubernetes_instances_are_resource_lists() {
        let r = resolve(&it("gpu.t4.xl"), Backend::Kubernetes).unwrap();
        assert_eq!(
            kubernetes_resources(&r.native).unwrap(),
            vec![
                ("cpu".to_string(), "4".to_string()),
                ("memory".to_string(), "16Gi".to_string()),
                ("nvidia.com/gpu".to_string(), "1".to_string())
            ]
        );
        assert!(resolve(&it("m5.large"), Backend::Kubernetes).is_err());
    }

    #[test]
    fn unknown_names_are_refused_with_a_suggestion() {
        let e = resolve(&it("gpu.t4.xxl"), Backend::Sagemaker).unwrap_err();
        assert!(e.contains("did you mean `gpu.t4.xl`"), "{e}");
        assert!(resolve(&it("ml.m5.large"), Backend::Local).is_err());
        assert!(resolve(&it("n1-standard-4"), Backend::Sagemaker).is_err());
    }
}
