//! The local model registry: a directory (default `.mlcd/registry` in the
//! workspace) of human-readable JSON. `<dir>/<model>/versions/<n>.json` holds one
//! version's lineage, number, creation time and aliases; `<dir>/<model>/aliases.json`
//! maps each alias to a version and is the source of truth for aliases.
//!
//! Every write is atomic: a version file is written to a temporary file and then
//! hard-linked to `<n>.json`, which fails when the number is taken, so two
//! concurrent registrations never share a number (the loser takes the next one);
//! alias changes hold a lock file and replace files by rename.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{check_alias, check_commit, check_new, ModelRegistry, NewVersion, Version};
use crate::error::UserError;

const NAME: &str = "local";
/// How long an alias change waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A lock file older than this was left by a process that died.
const STALE_LOCK: Duration = Duration::from_secs(120);
/// How many taken version numbers a registration skips before giving up.
const MAX_NUMBER_RACES: u32 = 1000;

/// One version as stored in `versions/<n>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct VersionFile {
    model_name: String,
    version: u64,
    /// RFC 3339, UTC.
    created: String,
    /// A copy of the aliases pointing here (aliases.json decides).
    #[serde(default)]
    aliases: Vec<String>,
    job_id: String,
    backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_url: Option<String>,
    #[serde(default)]
    hyperparameters: BTreeMap<String, String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    channels: BTreeMap<String, String>,
}

/// A model registry in a local directory.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    dir: PathBuf,
}

/// Checks that `model` can name a directory: letters, digits, `.`, `-`, `_`, not
/// starting with `.`.
pub fn check_model_name(model: &str) -> Result<(), UserError> {
    let ok = !model.is_empty()
        && model.len() <= 128
        && !model.starts_with('.')
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "`{model}` cannot name a model in the local registry: it becomes a directory name, so it must be 1 to 128 letters, digits, `.`, `-` and `_`, not starting with `.`"
        ))
        .hint("set `registry.model-name` (default: the model id)"))
    }
}

impl LocalRegistry {
    /// A registry in `dir` (created on the first registration).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalRegistry { dir: dir.into() }
    }

    /// The registry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs blocking file work off the async threads, so registrations from
    /// several tasks really run at once.
    async fn blocking<T: Send + 'static>(
        &self,
        what: String,
        f: impl FnOnce(Store) -> Result<T, UserError> + Send + 'static,
    ) -> Result<T, UserError> {
        let store = Store {
            dir: self.dir.clone(),
        };
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| UserError::failed(format!("the local registry failed {what}: {e}")))?
    }
}

#[async_trait]
impl ModelRegistry for LocalRegistry {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn register(&self, version: &NewVersion) -> Result<Version, UserError> {
        check_new(NAME, version)?;
        check_model_name(&version.model_name)?;
        let v = version.clone();
        let what = format!("registering model `{}`", v.model_name);
        self.blocking(what, move |s| s.register(&v)).await
    }

    async fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError> {
        check_model_name(model)?;
        let (model, job_id) = (model.to_string(), job_id.to_string());
        let what = format!("looking up job {job_id} of model `{model}`");
        self.blocking(what, move |s| s.find_by_job(&model, &job_id))
            .await
    }

    async fn find_by_commit(
        &self,
        model: &str,
        commit: &str,
    ) -> Result<Option<Version>, UserError> {
        check_model_name(model)?;
        check_commit(NAME, commit)?;
        let (model, commit) = (model.to_string(), commit.to_string());
        let what = format!("looking up commit {commit} of model `{model}`");
        self.blocking(what, move |s| s.find_by_commit(&model, &commit))
            .await
    }

    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError> {
        check_model_name(model)?;
        check_alias(NAME, alias)?;
        let (model, alias) = (model.to_string(), alias.to_string());
        let what = format!("looking up alias `{alias}` of model `{model}`");
        self.blocking(what, move |s| s.by_alias(&model, &alias))
            .await
    }

    async fn recent(&self, model: &str, n: usize) -> Result<Vec<Version>, UserError> {
        check_model_name(model)?;
        let model = model.to_string();
        let what = format!("listing the versions of model `{model}`");
        self.blocking(what, move |s| s.recent(&model, n)).await
    }

    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError> {
        check_model_name(model)?;
        check_alias(NAME, alias)?;
        let n: u64 = version.trim().parse().map_err(|_| {
            UserError::invalid(format!(
                "`{version}` is not a version of model `{model}` in the local registry: versions are numbers (1, 2, …)"
            ))
        })?;
        let (model, alias) = (model.to_string(), alias.to_string());
        let what = format!("setting alias `{alias}` of model `{model}`");
        self.blocking(what, move |s| s.set_alias(&model, n, &alias))
            .await
    }
}

/// The blocking side: paths and files.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn model_dir(&self, model: &str) -> PathBuf {
        self.dir.join(model)
    }

    fn versions_dir(&self, model: &str) -> PathBuf {
        self.model_dir(model).join("versions")
    }

    fn version_path(&self, model: &str, n: u64) -> PathBuf {
        self.versions_dir(model).join(format!("{n}.json"))
    }

    fn aliases_path(&self, model: &str) -> PathBuf {
        self.model_dir(model).join("aliases.json")
    }

    fn io_error(&self, model: &str, doing: &str, path: &Path, e: &io::Error) -> UserError {
        UserError::failed(format!(
            "the local registry at {} could not {doing} for model `{model}` ({}): {e}",
            self.dir.display(),
            path.display()
        ))
        .hint("check that the directory is writable and the disk is not full (registry.path in mlcd.yml moves it)")
    }

    /// The version numbers on disk, ascending.
    fn numbers(&self, model: &str) -> Result<Vec<u64>, UserError> {
        let dir = self.versions_dir(model);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error(model, "list the versions", &dir, &e)),
        };
        let mut numbers: Vec<u64> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    fn read_version(&self, model: &str, n: u64) -> Result<Option<VersionFile>, UserError> {
        let path = self.version_path(model, n);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error(model, "read a version", &path, &e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            UserError::failed(format!(
                "the local registry's version file {} of model `{model}` is not valid: {e}",
                path.display()
            ))
            .hint("it is JSON written by mlcd: restore it from version control or delete it")
        })
    }

    fn read_aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, UserError> {
        let path = self.aliases_path(model);
        match fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| {
                UserError::failed(format!(
                    "the local registry's alias file {} of model `{model}` is not valid: {e}",
                    path.display()
                ))
                .hint("it maps alias names to version numbers, like {\"production\": 3}")
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.io_error(model, "read the aliases", &path, &e)),
        }
    }

    /// Writes `bytes` to a fresh temporary file next to `target`.
    fn write_temp(&self, model: &str, target: &Path, bytes: &[u8]) -> Result<PathBuf, UserError> {
        let dir = target.parent().unwrap_or(&self.dir);
        fs::create_dir_all(dir).map_err(|e| self.io_error(model, "create a directory", dir, &e))?;
        for _ in 0..100 {
            let tmp = dir.join(format!(
                ".tmp-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(mut f) => {
                    let done = f.write_all(bytes).and_then(|()| f.sync_all());
                    if let Err(e) = done {
                        let _ = fs::remove_file(&tmp);
                        return Err(self.io_error(model, "write a file", &tmp, &e));
                    }
                    return Ok(tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io_error(model, "write a file", &tmp, &e)),
            }
        }
        Err(UserError::failed(format!(
            "the local registry at {} found no free temporary file name",
            dir.display()
        )))
    }

    /// Replaces `target` atomically (temporary file + rename).
    fn replace(&self, model: &str, target: &Path, bytes: &[u8]) -> Result<(), UserError> {
        let tmp = self.write_temp(model, target, bytes)?;
        fs::rename(&tmp, target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io_error(model, "replace a file", target, &e)
        })
    }

    fn register(&self, new: &NewVersion) -> Result<Version, UserError> {
        let model = new.model_name.as_str();
        let mut file = VersionFile {
            model_name: model.to_string(),
            version: 0,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            aliases: Vec::new(),
            job_id: new.job_id.clone(),
            backend: new.backend.clone(),
            commit: new.commit.clone(),
            image: new.image.clone(),
            artifact: new.artifact.clone(),
            run_url: new.run_url.clone(),
            hyperparameters: new.hyperparameters.clone(),
            metrics: new.metrics.clone(),
            channels: new.channels.clone(),
        };
        let mut n = self.numbers(model)?.last().copied().unwrap_or(0) + 1;
        for _ in 0..MAX_NUMBER_RACES {
            file.version = n;
            let target = self.version_path(model, n);
            let tmp = self.write_temp(model, &target, &to_json(&file))?;
            // A hard link is an atomic "create if absent" with the whole content.
            let linked = fs::hard_link(&tmp, &target);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    if let Some(alias) = &new.alias {
                        self.set_alias(model, n, alias)?;
                        file.aliases = vec![alias.clone()];
                    }
                    return Ok(self.to_version(file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(self.io_error(model, "create a version", &target, &e)),
            }
        }
        Err(UserError::failed(format!(
            "the local registry at {} could not find a free version number for model `{model}` after {MAX_NUMBER_RACES} tries",
            self.dir.display()
        )))
    }

    fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError> {
        let aliases = self.read_aliases(model)?;
        for n in self.numbers(model)? {
            if let Some(mut f) = self.read_version(model, n)? {
                if f.job_id == job_id {
                    f.aliases = aliases_of(&aliases, n);
                    return Ok(Some(self.to_version(f)));
                }
            }
        }
        Ok(None)
    }

    /// Newest first: the highest version number recording `commit`.
    fn recent(&self, model: &str, n: usize) -> Result<Vec<Version>, UserError> {
        let aliases = self.read_aliases(model)?;
        let numbers = self.numbers(model)?;
        let mut out = Vec::new();
        for v in numbers.iter().rev().take(n).rev() {
            if let Some(mut f) = self.read_version(model, *v)? {
                f.aliases = aliases_of(&aliases, *v);
                out.push(self.to_version(f));
            }
        }
        Ok(out)
    }

    fn find_by_commit(&self, model: &str, commit: &str) -> Result<Option<Version>, UserError> {
        let aliases = self.read_aliases(model)?;
        for n in self.numbers(model)?.into_iter().rev() {
            if let Some(mut f) = self.read_version(model, n)? {
                if f.commit.as_deref() == Some(commit) {
                    f.aliases = aliases_of(&aliases, n);
                    return Ok(Some(self.to_version(f)));
                }
            }
        }
        Ok(None)
    }

    fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError> {
        let aliases = self.read_aliases(model)?;
        let Some(&n) = aliases.get(alias) else {
            return Ok(None);
        };
        let mut f = self.read_version(model, n)?.ok_or_else(|| {
            UserError::failed(format!(
                "the local registry at {}: alias `{alias}` of model `{model}` points to version {n}, which does not exist",
                self.dir.display()
            ))
            .hint(format!(
                "point the alias at an existing version, or edit {}",
                self.aliases_path(model).display()
            ))
        })?;
        f.aliases = aliases_of(&aliases, n);
        Ok(Some(self.to_version(f)))
    }

    fn set_alias(&self, model: &str, n: u64, alias: &str) -> Result<(), UserError> {
        if self.read_version(model, n)?.is_none() {
            return Err(UserError::invalid(format!(
                "cannot point alias `{alias}` at version {n} of model `{model}`: the local registry at {} has no such version",
                self.dir.display()
            )));
        }
        let _lock = self.lock(model)?;
        let mut aliases = self.read_aliases(model)?;
        let previous = aliases.insert(alias.to_string(), n);
        self.replace(model, &self.aliases_path(model), &to_json(&aliases))?;
        // Keep the copies in the version files in step, for people reading them.
        for m in previous.into_iter().chain([n]) {
            if let Some(mut f) = self.read_version(model, m)? {
                f.aliases = aliases_of(&aliases, m);
                self.replace(model, &self.version_path(model, m), &to_json(&f))?;
            }
        }
        Ok(())
    }

    /// Holds `<model>/.lock` until dropped; waits for another holder, and breaks
    /// a lock left behind by a process that died.
    fn lock(&self, model: &str) -> Result<LockFile, UserError> {
        let path = self.model_dir(model).join(".lock");
        let start = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(LockFile(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        log::warn!("removing a stale lock {}", path.display());
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if start.elapsed() > LOCK_WAIT {
                        return Err(UserError::failed(format!(
                            "the local registry at {} is locked for model `{model}` ({} exists) and stayed locked for {}s",
                            self.dir.display(),
                            path.display(),
                            LOCK_WAIT.as_secs()
                        ))
                        .hint("another mlcd is changing aliases; if none runs, delete the lock file"));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(self.io_error(model, "take the alias lock", &path, &e)),
            }
        }
    }

    fn to_version(&self, f: VersionFile) -> Version {
        let uri = self
            .version_path(&f.model_name, f.version)
            .display()
            .to_string();
        Version {
            version: f.version.to_string(),
            uri,
            job_id: Some(f.job_id),
            metrics: f.metrics,
            image: Some(f.image).filter(|i| !i.is_empty()),
            artifact: f.artifact,
            commit: f.commit,
            aliases: f.aliases,
            model_name: f.model_name,
        }
    }
}

/// Removes the lock file when dropped.
struct LockFile(PathBuf);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn aliases_of(aliases: &BTreeMap<String, u64>, n: u64) -> Vec<String> {
    aliases
        .iter()
        .filter(|(_, v)| **v == n)
        .map(|(a, _)| a.clone())
        .collect()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("registry files serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_must_be_directory_names() {
        check_model_name("churn-v2_1.0").unwrap();
        for bad in ["", "../etc", "a/b", ".hidden", "with space"] {
            let err = check_model_name(bad).unwrap_err();
            assert!(err.message.contains("local registry"), "{err}");
        }
    }
}
