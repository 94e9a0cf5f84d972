//! The local endpoint's router image: mlcd's own tiny image, made on the
//! engine from the mlcd executable itself (no registry, no pull, no build
//! context) so the router never runs inside the serving image — any serving
//! image works (busybox, alpine, distroless), and the engine starts a container
//! from a one-layer image of a few MB in milliseconds.
//!
//! The image holds `/mlcd/mlcd` and nothing else when the executable is static
//! (the released binary, `scripts/build-static`). A dynamically linked mlcd (a
//! `cargo build`/`cargo install` build) carries its ELF loader and the shared
//! libraries the loader resolves for it on this machine (`ld.so --list`), at
//! their own paths, so it still needs nothing from any other image. The tag
//! is `mlcd-router:<mlcd version>-<digest of those files>`: a new binary (or new
//! libraries) makes a new image, a second deploy reuses the one there.

use std::path::{Path, PathBuf};

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::UserError;

/// The repository router images are tagged in (local to the engine, never pushed).
pub const REPOSITORY: &str = "mlcd-router";
/// Where the executable lives in the image (its directory also holds the routes).
pub const EXECUTABLE: &str = "/mlcd/mlcd";

/// How an executable is linked, read from its ELF program headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    /// No program interpreter: runs on any Linux kernel as it is.
    Static,
    /// Needs this ELF interpreter (`/lib64/ld-linux-x86-64.so.2`) and its libraries.
    Dynamic { interpreter: PathBuf },
}

/// What goes into the router image, and its tag.
#[derive(Debug, Clone)]
pub struct RouterImage {
    /// `mlcd-router:<version>-<digest>`.
    pub tag: String,
    /// How the executable is linked.
    pub linking: Linking,
    /// (file on this machine, path in the image), the executable first.
    files: Vec<(PathBuf, String)>,
    /// Directories of the bundled libraries (a dynamic executable's search path).
    library_path: Vec<String>,
}

/// Reads how the ELF file `bytes` is linked (None: not an ELF executable).
pub fn linking_of(bytes: &[u8]) -> Option<Linking> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let is64 = match bytes[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match bytes[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let uint = |at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at + len)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = u64::from(if le { b[len - 1 - i] } else { b[i] });
            v = (v << 8) | byte;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (uint(32, 8)?, uint(54, 2)?, uint(56, 2)?)
    } else {
        (uint(28, 4)?, uint(42, 2)?, uint(44, 2)?)
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if uint(at, 4)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if is64 {
            (uint(at + 8, 8)?, uint(at + 32, 8)?)
        } else {
            (uint(at + 4, 4)?, uint(at + 16, 4)?)
        };
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        let raw = bytes.get(start..end)?;
        let path = String::from_utf8_lossy(raw)
            .trim_end_matches('\0')
            .to_string();
        return Some(Linking::Dynamic {
            interpreter: PathBuf::from(path),
        });
    }
    Some(Linking::Static)
}

/// The libraries `ld.so --list` resolved (`libc.so.6 => /lib/…/libc.so.6 (0x…)`).
fn listed_libraries(listing: &str) -> Vec<PathBuf> {
    listing
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("=>")?;
            let path = rest.trim().split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

impl RouterImage {
    /// What the router image of `executable` holds (reads and hashes it; for a
    /// dynamic executable, asks its loader which libraries it needs).
    pub fn for_executable(executable: &Path) -> Result<RouterImage, UserError> {
        let cannot = |what: &str, e: &dyn std::fmt::Display| {
            UserError::failed(format!(
                "cannot make the endpoint's router image from {}: {what}: {e}",
                executable.display()
            ))
        };
        let bytes = std::fs::read(executable).map_err(|e| cannot("cannot read it", &e))?;
        let linking =
            linking_of(&bytes).ok_or_else(|| cannot("not an ELF executable", &"no ELF header"))?;
        let mut files = vec![(executable.to_path_buf(), EXECUTABLE.to_string())];
        let mut library_path: Vec<String> = Vec::new();
        if let Linking::Dynamic { interpreter } = &linking {
            let out = std::process::Command::new(interpreter)
                .arg("--list")
                .arg(executable)
                .output()
                .map_err(|e| {
                    cannot(
                        &format!("cannot run its loader {}", interpreter.display()),
                        &e,
                    )
                })?;
            if !out.status.success() {
                return Err(cannot(
                    &format!("its loader {} --list failed", interpreter.display()),
                    &String::from_utf8_lossy(&out.stderr).trim(),
                ));
            }
            files.push((interpreter.clone(), interpreter.display().to_string()));
            for lib in listed_libraries(&String::from_utf8_lossy(&out.stdout)) {
                if lib == *interpreter {
                    continue;
                }
                if let Some(dir) = lib.parent().map(|d| d.display().to_string()) {
                    if !library_path.contains(&dir) {
                        library_path.push(dir);
                    }
                }
                files.push((lib.clone(), lib.display().to_string()));
            }
        }
        let mut digest = Sha256::new();
        for (i, (source, target)) in files.iter().enumerate() {
            digest.update(target.as_bytes());
            digest.update([0]);
            if i == 0 {
                digest.update(&bytes);
            } else {
                let lib = std::fs::read(source).map_err(|e| {
                    cannot(&format!("cannot read the library {}", source.display()), &e)
                })?;
                digest.update(&lib);
            }
            digest.update([0]);
        }
        let hex: String = digest
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(RouterImage {
            tag: format!("{REPOSITORY}:{}-{hex}", env!("CARGO_PKG_VERSION")),
            linking,
            files,
            library_path,
        })
    }

    /// The image's one layer: its files as a tar, with fixed times and owners.
    fn layer(&self) -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs: Vec<String> = Vec::new();
        for (source, target) in &self.files {
            let rel = target.trim_start_matches('/');
            // Every parent directory first, once.
            let mut parent = String::new();
            for part in rel
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map_or(&[][..], |(_, p)| p)
            {
                parent.push_str(part);
                parent.push('/');
                if !dirs.contains(&parent) {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, &parent, std::io::empty())?;
                    dirs.push(parent.clone());
                }
            }
            let data = std::fs::read(source)?;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, rel, data.as_slice())?;
        }
        b.into_inner()
    }

    /// Makes sure the image is on the engine (imports it when it is not) and
    /// returns its tag.
    pub async fn ensure(&self, docker: &Docker, host: &str) -> Result<String, UserError> {
        if docker.inspect_image(&self.tag).await.is_ok() {
            return Ok(self.tag.clone());
        }
        let failed = |e: &dyn std::fmt::Display| {
            UserError::failed(format!(
                "Docker engine at {host}: cannot import the endpoint's router image {}: {e}",
                self.tag
            ))
        };
        match &self.linking {
            Linking::Static => log::info!("importing the router image {} (static mlcd)", self.tag),
            Linking::Dynamic { interpreter } => log::info!(
                "importing the router image {}: mlcd is dynamically linked, so the image carries its loader {} and {} libraries from this machine",
                self.tag,
                interpreter.display(),
                self.files.len() - 2
            ),
        }
        let layer = {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.layer())
                .await
                .map_err(|e| failed(&e))?
                .map_err(|e| failed(&e))?
        };
        let (repo, tag) = self
            .tag
            .split_once(':')
            .expect("a router image tag has a colon");
        let mut changes = vec![format!("ENTRYPOINT [\"{EXECUTABLE}\"]")];
        if !self.library_path.is_empty() {
            changes.push(format!(
                "ENV LD_LIBRARY_PATH={}",
                self.library_path.join(":")
            ));
        }
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes)
            .build();
        let mut stream =
            docker.create_image(Some(opts), Some(bollard::body_full(layer.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| failed(&e))?;
        }
        Ok(self.tag.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal 64-bit little-endian ELF header with one program header.
    fn elf(p_type: u32, interp: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&p_type.to_le_bytes());
        let off = b.len() as u64;
        b[64 + 8..64 + 16].copy_from_slice(&off.to_le_bytes());
        b[64 + 32..64 + 40].copy_from_slice(&(interp.len() as u64).to_le_bytes());
        b.extend_from_slice(interp);
        b
    }

    #[test]
    fn an_interpreter_header_makes_an_executable_dynamic() {
        let dynamic = elf(3, b"/lib64/ld-linux-x86-64.so.2\0");
        assert_eq!(
            linking_of(&dynamic),
            Some(Linking::Dynamic {
                interpreter: PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            })
        );
        // PT_LOAD only: static.
        assert_eq!(linking_of(&elf(1, b"")), Some(Linking::Static));
        assert_eq!(linking_of(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn the_running_test_binary_is_read_like_any_executable() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(linking_of(&me).is_some());
    }

    #[test]
    fn the_loader_listing_names_the_resolved_libraries() {
        let listing = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            listed_libraries(listing),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
            ]
        );
    }
}
