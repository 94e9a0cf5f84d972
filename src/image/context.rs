//! The build context: the files `.dockerignore` leaves in, streamed as the tar the
//! Docker Engine API takes, and the content digest that lets an unchanged model skip
//! its rebuild. Nothing is held whole: [`pack`] walks and hashes (one chunked read of
//! each file), [`spawn_tar`] writes the tar from a blocking task into a bounded
//! channel the engine's request body reads from, checking on the way that every
//! file is still what was hashed.
//!
//! `.dockerignore` is matched as the Docker CLI matches it (moby's `patternmatcher`):
//! patterns are relative to the context root, `*` and `?` stop at `/`, `**` spans
//! directories, a pattern that matches a directory excludes everything below it, `!`
//! re-includes and the last matching pattern wins. The tar and the digest depend only
//! on what is sent — paths, executable bits, symlink targets and contents — never on
//! mtimes, ownership or the order the filesystem lists a directory in.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::error::{Location, UserError};

/// Where a Dockerfile from outside the context is put inside the tar (the Docker CLI
/// uses a random `.dockerfile.<id>`; a fixed name keeps the digest stable).
pub const OUTSIDE_DOCKERFILE: &str = ".mlcd/Dockerfile";

/// Where Docker documents the `.dockerignore` syntax; hints point there.
const DOCKERIGNORE_DOCS: &str =
    "https://docs.docker.com/build/concepts/context/#dockerignore-files";

/// A build context, walked and hashed, ready to stream to the Engine API's
/// `POST /build` (nothing of the files' contents is kept in memory).
#[derive(Debug)]
pub struct BuildContext {
    /// The Dockerfile's path inside the tar (what the Engine API's `dockerfile` parameter gets).
    pub dockerfile: String,
    /// Files sent (regular files + symlinks).
    pub files: usize,
    /// Bytes of file content sent.
    pub bytes: u64,
    /// `sha256:<hex>` of the context: every sent path (directories included), its
    /// executable bit, symlink target and content, in sorted order, plus which file is
    /// the Dockerfile (switching Dockerfiles in one context changes what is built).
    pub digest: String,
    /// The context's canonical root (files are read under it).
    root: PathBuf,
    /// The context as the user gave it (for messages).
    shown_root: PathBuf,
    /// What is sent, sorted. The tar is deterministic: sorted paths, mtime 0, uid/gid
    /// 0, mode 0644 or 0755 — 0777 for symlinks, whose mode nothing reads.
    entries: Vec<Entry>,
    /// For each entry read from disk, what the hashing pass saw of it.
    stamps: Vec<Option<Stamp>>,
}

/// Walks `context_dir` (absolute, existing) after `.dockerignore` and hashes what
/// would be sent (one streaming read of each file), with the Dockerfile at `dockerfile` (absolute, an existing file inside the context or
/// elsewhere; from elsewhere it is sent as [`OUTSIDE_DOCKERFILE`]).
///
/// Errors name the file: an unreadable file or directory, a `.dockerignore` pattern
/// that does not parse, a symlink that points outside the context (Docker would send
/// it as a dangling link).
pub fn pack(context_dir: &Path, dockerfile: &Path) -> Result<BuildContext, UserError> {
    let root = fs::canonicalize(context_dir).map_err(|e| {
        UserError::invalid(format!(
            "cannot open the build context `{}`: {e}",
            context_dir.display()
        ))
        .hint("check `build.context` in the config: it is a directory relative to the workspace")
    })?;
    if !root.is_dir() {
        return Err(UserError::invalid(format!(
            "the build context `{}` is not a directory",
            context_dir.display()
        ))
        .hint("point `build.context` at the directory the Dockerfile's COPY lines read from"));
    }
    let dockerfile_abs = resolve_dockerfile(dockerfile)?;
    let inside = dockerfile_abs
        .strip_prefix(&root)
        .ok()
        .filter(|rel| !rel.as_os_str().is_empty())
        .map(Path::to_path_buf);

    let (ignore_text, ignore) = read_dockerignore(&root, context_dir)?;

    // Docker always sends `.dockerignore` and the Dockerfile, even when they are ignored
    // (the daemon needs them; it removes them from what COPY sees itself).
    let mut forced: Vec<PathBuf> = vec![PathBuf::from(".dockerignore")];
    if let Some(rel) = &inside {
        forced.push(rel.clone());
    }

    let walker = Walker {
        root: &root,
        shown_root: context_dir,
        ignore: &ignore,
        forced: &forced,
    };
    let mut entries = Vec::new();
    walker.walk(&root, &mut PathBuf::new(), None, &mut entries)?;

    let dockerfile_in_tar = match &inside {
        Some(rel) => {
            let key = key_of(rel);
            if !entries.iter().any(|e| e.key == key) {
                return Err(UserError::invalid(format!(
                    "the Dockerfile `{}` is not a regular file in the build context `{}`",
                    dockerfile.display(),
                    context_dir.display()
                ))
                .hint("point `build.dockerfile` at a file"));
            }
            String::from_utf8(key).map_err(|_| {
                UserError::invalid(format!(
                    "the Dockerfile path `{}` is not valid UTF-8, which the Engine API cannot take",
                    dockerfile.display()
                ))
                .hint("rename the Dockerfile")
            })?
        }
        None => {
            add_outside_dockerfile(&mut entries, &dockerfile_abs, dockerfile, ignore_text)?;
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    entries.sort_by(|a, b| a.key.cmp(&b.key));

    hash_context(&root, context_dir, entries, dockerfile_in_tar)
}

/// Reads and parses `.dockerignore` at the root of `context_dir`; no file means nothing
/// is ignored.
pub fn dockerignore(context_dir: &Path) -> Result<Ignore, UserError> {
    read_dockerignore(context_dir, context_dir).map(|(_, ignore)| ignore)
}

/// The patterns of a `.dockerignore`, matched as Docker matches them.
#[derive(Debug, Clone)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    set: GlobSet,
}

/// One `.dockerignore` line after cleaning.
#[derive(Debug, Clone)]
struct Pattern {
    /// `!pattern`: re-includes what it matches.
    exception: bool,
    /// For exceptions: one matcher per `/`-separated component before the first one
    /// holding `**` (`None` where a component does not compile on its own), to tell
    /// whether the pattern could match anything below an excluded directory.
    components: Vec<Option<GlobMatcher>>,
    /// Some component holds `**`, so the pattern can match at any depth after `components`.
    recursive: bool,
}

impl Default for Ignore {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl Ignore {
    /// Parses the text of a `.dockerignore` (`file` is only used in error messages):
    /// one pattern a line, `#` comments and blank lines skipped, surrounding whitespace
    /// trimmed, `!` for exceptions, each pattern cleaned like Go's `filepath.Clean` and
    /// a leading `/` dropped.
    pub fn parse(text: &str, file: &Path) -> Result<Self, UserError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        let mut set = GlobSetBuilder::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let bad = |what: String| {
                UserError::invalid(format!(
                    "`{}` line {line}: `{}` {what}",
                    file.display(),
                    raw.trim()
                ))
                .hint(format!(
                    "patterns use Go's filepath.Match syntax (`*`, `?`, `[a-z]`, `\\` escapes) plus `**` for any number of directories; see {DOCKERIGNORE_DOCS}"
                ))
                .at(Location {
                    file: file.to_path_buf(),
                    line,
                    column: None,
                })
            };
            let mut pattern = raw.trim();
            if pattern.is_empty() || pattern.starts_with('#') {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(bad("is an exception with no pattern after `!`".into()));
                }
            }
            let cleaned = go_clean(pattern);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            let glob =
                compile(&cleaned).map_err(|e| bad(format!("is not a valid pattern: {e}")))?;
            set.add(glob);
            let components = if exception {
                cleaned
                    .split('/')
                    .map_while(|c| (!c.contains("**")).then_some(c))
                    .map(|c| compile(c).ok().map(|g| g.compile_matcher()))
                    .collect()
            } else {
                Vec::new()
            };
            patterns.push(Pattern {
                exception,
                components,
                recursive: cleaned.contains("**"),
            });
        }
        let set = set.build().map_err(|e| {
            UserError::invalid(format!("`{}`: {e}", file.display()))
                .hint(format!("see {DOCKERIGNORE_DOCS}"))
        })?;
        Ok(Self { patterns, set })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the
    /// context: the last pattern that matches it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let mut last = None;
        let mut prefix = PathBuf::new();
        for component in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            prefix.push(component);
            last = self.last_match(&prefix, last);
        }
        self.excludes(last)
    }

    /// The index of the last pattern matching `path` or its parents, given the answer for
    /// its parent directory (`parent`).
    fn last_match(&self, path: &Path, parent: Option<usize>) -> Option<usize> {
        let own = self
            .set
            .matches_candidate(&Candidate::new(path))
            .into_iter()
            .max();
        own.max(parent)
    }

    /// Whether the pattern that decided (if any) excludes.
    fn excludes(&self, last: Option<usize>) -> bool {
        last.is_some_and(|i| !self.patterns[i].exception)
    }

    /// Whether some exception could re-include a path strictly below the excluded
    /// directory `dir` (so the walk must look inside it). Errs on the side of yes.
    fn may_include_below(&self, dir: &Path) -> bool {
        let dir: Vec<_> = dir.components().map(Component::as_os_str).collect();
        self.patterns.iter().filter(|p| p.exception).any(|p| {
            for (i, name) in dir.iter().enumerate() {
                match p.components.get(i) {
                    // The pattern ends at an ancestor of `dir` (or `**` follows).
                    None => return p.recursive,
                    Some(None) => return true,
                    Some(Some(glob)) if !glob.is_match(name) => return false,
                    Some(Some(_)) => {}
                }
            }
            p.components.len() > dir.len() || p.recursive
        })
    }
}

/// Go's `filepath.Clean` on a `/`-separated pattern: no empty or `.` components, `..`
/// resolved lexically, `.` for nothing.
fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Compiles one cleaned pattern with Go's `filepath.Match` meaning: `*` and `?` never
/// cross `/`, `\` escapes, and `{a,b}` is literal text (globset would read alternatives).
fn compile(pattern: &str) -> Result<globset::Glob, globset::Error> {
    let mut glob = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut class_len = 0;
    while let Some(c) = chars.next() {
        if in_class {
            glob.push(c);
            match c {
                ']' if class_len > 0 => in_class = false,
                '!' | '^' if class_len == 0 => continue,
                _ => {}
            }
            class_len += 1;
            continue;
        }
        match c {
            '\\' => {
                glob.push('\\');
                if let Some(next) = chars.next() {
                    glob.push(next);
                }
            }
            '{' | '}' => {
                glob.push('\\');
                glob.push(c);
            }
            '[' => {
                glob.push('[');
                in_class = true;
                class_len = 0;
            }
            _ => glob.push(c),
        }
    }
    GlobBuilder::new(&glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Reads `.dockerignore` under `root` (`shown_root` is the context as the user gave it).
fn read_dockerignore(
    root: &Path,
    shown_root: &Path,
) -> Result<(Option<Vec<u8>>, Ignore), UserError> {
    let path = root.join(".dockerignore");
    let shown = shown_root.join(".dockerignore");
    match fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let ignore = Ignore::parse(&text, &shown)?;
            Ok((Some(bytes), ignore))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((None, Ignore::default())),
        Err(e) => Err(
            UserError::invalid(format!("cannot read `{}`: {e}", shown.display()))
                .hint("make it a readable file, or remove it to send the whole context"),
        ),
    }
}

/// The Dockerfile's absolute path with its directory resolved (so it compares with the
/// canonical context root), keeping its own name even when it is a symlink.
fn resolve_dockerfile(dockerfile: &Path) -> Result<PathBuf, UserError> {
    let missing = |e: io::Error| {
        UserError::invalid(format!(
            "cannot read the Dockerfile `{}`: {e}",
            dockerfile.display()
        ))
        .hint("check `build.dockerfile` in the config: it is a file relative to the workspace")
    };
    let name = dockerfile.file_name().ok_or_else(|| {
        missing(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ))
    })?;
    let parent = dockerfile.parent().unwrap_or(Path::new("/"));
    let parent = fs::canonicalize(parent).map_err(missing)?;
    let abs = parent.join(name);
    if fs::metadata(&abs).map_err(missing)?.is_dir() {
        return Err(missing(io::Error::other("it is a directory")));
    }
    Ok(abs)
}

/// What a path in the context is sent as.
#[derive(Debug)]
enum Kind {
    Dir,
    /// A regular file: its executable bit, and its content when it is not read from disk.
    File {
        exec: bool,
        content: Option<Vec<u8>>,
    },
    Symlink(PathBuf),
}

/// One path to send.
#[derive(Debug)]
struct Entry {
    /// Relative path, as the platform spells it.
    rel: PathBuf,
    /// The same path as `/`-separated bytes: what the tar gets, what is sorted and hashed.
    key: Vec<u8>,
    kind: Kind,
}

/// `rel` as `/`-separated bytes.
fn key_of(rel: &Path) -> Vec<u8> {
    let mut key = Vec::new();
    for (i, c) in rel.components().enumerate() {
        if i > 0 {
            key.push(b'/');
        }
        key.extend_from_slice(c.as_os_str().as_encoded_bytes());
    }
    key
}

/// How a relative path is shown in messages.
fn shown(rel: &Path) -> String {
    String::from_utf8_lossy(&key_of(rel)).into_owned()
}

/// Walks the context, deciding what is sent.
struct Walker<'a> {
    root: &'a Path,
    shown_root: &'a Path,
    ignore: &'a Ignore,
    forced: &'a [PathBuf],
}

impl Walker<'_> {
    fn walk(
        &self,
        dir: &Path,
        rel: &mut PathBuf,
        parent_match: Option<usize>,
        entries: &mut Vec<Entry>,
    ) -> Result<(), UserError> {
        let unreadable = |e: io::Error| {
            let what = if rel.as_os_str().is_empty() {
                format!("the build context `{}`", self.shown_root.display())
            } else {
                format!(
                    "the directory `{}` in the build context `{}`",
                    shown(rel),
                    self.shown_root.display()
                )
            };
            UserError::invalid(format!("cannot read {what}: {e}"))
                .hint("make it readable by the user running mlcd, or list it in .dockerignore")
        };
        let mut children: Vec<(OsString, fs::FileType)> = Vec::new();
        for item in fs::read_dir(dir).map_err(unreadable)? {
            let item = item.map_err(unreadable)?;
            let file_type = item.file_type().map_err(unreadable)?;
            children.push((item.file_name(), file_type));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));

        for (name, file_type) in children {
            rel.push(&name);
            let result = self.visit(dir, &name, file_type, rel, parent_match, entries);
            rel.pop();
            result?;
        }
        Ok(())
    }

    fn visit(
        &self,
        dir: &Path,
        name: &OsString,
        file_type: fs::FileType,
        rel: &mut PathBuf,
        parent_match: Option<usize>,
        entries: &mut Vec<Entry>,
    ) -> Result<(), UserError> {
        let last = self.ignore.last_match(rel, parent_match);
        let forced = self.forced.iter().any(|f| f == rel);
        let excluded = self.ignore.excludes(last) && !forced;
        let path = dir.join(name);

        if file_type.is_dir() {
            if !excluded {
                entries.push(self.entry(rel, Kind::Dir));
            } else if !self.ignore.may_include_below(rel)
                && !self.forced.iter().any(|f| f.starts_with(&*rel))
            {
                return Ok(());
            }
            return self.walk(&path, rel, last, entries);
        }
        if excluded {
            return Ok(());
        }
        if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| self.unreadable_file(rel, e))?;
            self.check_symlink(rel, &target)?;
            entries.push(self.entry(rel, Kind::Symlink(target)));
        } else if file_type.is_file() {
            let meta = fs::metadata(&path).map_err(|e| self.unreadable_file(rel, e))?;
            entries.push(self.entry(
                rel,
                Kind::File {
                    exec: is_executable(&meta),
                    content: None,
                },
            ));
        } else {
            log::warn!(
                "skipping `{}` in the build context `{}`: it is a {}, which a build context cannot carry",
                shown(rel),
                self.shown_root.display(),
                special_kind(&file_type)
            );
        }
        Ok(())
    }

    fn entry(&self, rel: &Path, kind: Kind) -> Entry {
        Entry {
            rel: rel.to_path_buf(),
            key: key_of(rel),
            kind,
        }
    }

    fn unreadable_file(&self, rel: &Path, e: io::Error) -> UserError {
        unreadable_file(self.shown_root, rel, e)
    }

    /// Refuses a symlink whose target, resolved lexically from its directory, leaves the
    /// context: Docker sends the link, not what it points to.
    fn check_symlink(&self, rel: &Path, target: &Path) -> Result<(), UserError> {
        let link_dir = rel.parent().unwrap_or(Path::new(""));
        let resolved = if target.is_absolute() {
            target
                .strip_prefix(self.root)
                .ok()
                .or_else(|| target.strip_prefix(self.shown_root).ok())
                .and_then(|inner| lexical_depth_ok(Path::new(""), inner))
        } else {
            lexical_depth_ok(link_dir, target)
        };
        if resolved.is_some() {
            return Ok(());
        }
        let where_to = if target.is_absolute() {
            format!("`{}`", target.display())
        } else {
            format!(
                "`{}` (`{}`)",
                target.display(),
                lexical_join(&self.shown_root.join(link_dir), target).display()
            )
        };
        Err(UserError::invalid(format!(
            "the build context `{}` contains a symlink `{}` pointing outside it to {where_to}: Docker would not follow it, so the image would get a dangling link",
            self.shown_root.display(),
            shown(rel)
        ))
        .hint("remove the symlink or copy the file into the context; if the image does not need it, list it in .dockerignore"))
    }
}

/// `base` joined with `target`, resolved lexically, if it never climbs above the root
/// `base` is relative to.
fn lexical_depth_ok(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `base` joined with `target`, `..` resolved lexically (for messages).
fn lexical_join(base: &Path, target: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn unreadable_file(shown_root: &Path, rel: &Path, e: io::Error) -> UserError {
    UserError::invalid(format!(
        "cannot read `{}` in the build context `{}`: {e}",
        shown(rel),
        shown_root.display()
    ))
    .hint("make it readable by the user running mlcd, or list it in .dockerignore")
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn special_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "named pipe"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_file_type: &fs::FileType) -> &'static str {
    "special file"
}

/// Adds a Dockerfile from outside the context as [`OUTSIDE_DOCKERFILE`], and lists it in
/// the sent `.dockerignore` so COPY does not put it in the image (what the Docker CLI does).
fn add_outside_dockerfile(
    entries: &mut Vec<Entry>,
    abs: &Path,
    given: &Path,
    ignore_text: Option<Vec<u8>>,
) -> Result<(), UserError> {
    if let Some(clash) = entries.iter().find(|e| {
        e.key == OUTSIDE_DOCKERFILE.as_bytes()
            || (e.key == b".mlcd" && !matches!(e.kind, Kind::Dir))
    }) {
        return Err(UserError::invalid(format!(
            "the Dockerfile `{}` is outside the build context, and the context already has `{}`, where mlcd puts such a Dockerfile",
            given.display(),
            String::from_utf8_lossy(&clash.key)
        ))
        .hint("move the Dockerfile into the context, or list `.mlcd/Dockerfile` in .dockerignore"));
    }
    let content = fs::read(abs).map_err(|e| {
        UserError::invalid(format!(
            "cannot read the Dockerfile `{}`: {e}",
            given.display()
        ))
        .hint("make it readable by the user running mlcd")
    })?;

    let mut ignore = ignore_text.unwrap_or_else(|| b".dockerignore".to_vec());
    ignore.extend_from_slice(format!("\n{OUTSIDE_DOCKERFILE}\n").as_bytes());
    entries.retain(|e| e.key != b".dockerignore");
    entries.push(Entry {
        rel: PathBuf::from(".dockerignore"),
        key: b".dockerignore".to_vec(),
        kind: Kind::File {
            exec: false,
            content: Some(ignore),
        },
    });
    entries.push(Entry {
        rel: PathBuf::from(OUTSIDE_DOCKERFILE),
        key: OUTSIDE_DOCKERFILE.as_bytes().to_vec(),
        kind: Kind::File {
            exec: false,
            content: Some(content),
        },
    });
    Ok(())
}

/// What the hashing pass saw of a file read from disk: the tar header's size, and
/// what tells, when the tar is streamed, that the file changed since.
#[derive(Debug, Clone, PartialEq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

/// Why streaming the tar stopped.
#[derive(Debug)]
pub enum StreamError {
    /// Whatever read the tar went away (the engine refused the build, or the
    /// request failed): its own error says why.
    Aborted(io::Error),
    /// A file could not be read, or changed after the build id was computed.
    Context(UserError),
}

impl From<StreamError> for UserError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Aborted(e) => {
                UserError::failed(format!("sending the build context failed: {e}"))
            }
            StreamError::Context(e) => e,
        }
    }
}

/// How many bytes a file is read by at a time (hashing and streaming).
const READ_CHUNK: usize = 1 << 20;

/// A reader that hashes what it reads and remembers its own failure, so that a
/// failed copy tells a file that cannot be read from a tar sink that went away.
struct HashingReader<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
    read: u64,
    failed: Option<io::ErrorKind>,
    failure: Option<String>,
}

impl<R: io::Read> io::Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(e.kind());
                self.failure = Some(e.to_string());
                Err(e)
            }
        }
    }
}

impl BuildContext {
    /// Writes the context as a tar into `out`, reading each file from disk in
    /// chunks (nothing is held whole), and checks that what was sent is what the
    /// digest was computed from: content that changed since [`pack`] fails the
    /// stream before the tar's end, so the engine never builds from a context the
    /// build id does not describe (a file only touched is sent as before).
    pub fn write_tar<W: io::Write>(&self, out: W) -> Result<W, StreamError> {
        let mut tar = tar::Builder::new(out);
        let mut stamps = self.stamps.clone();
        let totals = self.visit(Some(&mut tar), &mut stamps, true)?;
        if totals.digest != self.digest {
            return Err(StreamError::Context(changed_error(
                &self.shown_root,
                totals.changed.as_deref(),
            )));
        }
        tar.into_inner().map_err(StreamError::Aborted)
    }

    /// The whole tar in memory (for small contexts and tests; a build streams it
    /// with [`spawn_tar`]).
    pub fn tar(&self) -> Result<Vec<u8>, UserError> {
        self.write_tar(Vec::new()).map_err(UserError::from)
    }

    /// Walks the sorted entries once: hashes them, and writes them to `tar` when
    /// given. Files read from disk record their [`Stamp`] (`check: false`, the
    /// hashing pass) or are checked against it (`check: true`, the streaming pass).
    fn visit<W: io::Write>(
        &self,
        mut tar: Option<&mut tar::Builder<W>>,
        stamps: &mut Vec<Option<Stamp>>,
        check: bool,
    ) -> Result<Totals, StreamError> {
        let root = &self.root;
        let shown_root = &self.shown_root;
        let mut hasher = Sha256::new();
        hasher.update(b"mlcd-build-context-v1\0");
        hash_field(&mut hasher, self.dockerfile.as_bytes());
        let mut files = 0;
        let mut bytes = 0u64;
        let mut changed: Option<PathBuf> = None;
        stamps.resize(self.entries.len(), None);
        for (entry, stamp) in self.entries.iter().zip(stamps.iter_mut()) {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match &entry.kind {
                Kind::Dir => {
                    hasher.update(b"d");
                    hash_field(&mut hasher, &entry.key);
                    if let Some(tar) = tar.as_deref_mut() {
                        header.set_entry_type(tar::EntryType::Directory);
                        header.set_mode(0o755);
                        header.set_size(0);
                        let mut path = entry.rel.clone().into_os_string();
                        path.push("/");
                        tar.append_data(&mut header, Path::new(&path), io::empty())
                            .map_err(StreamError::Aborted)?;
                    }
                }
                Kind::Symlink(target) => {
                    hasher.update(b"l");
                    hash_field(&mut hasher, &entry.key);
                    hash_field(&mut hasher, target.as_os_str().as_encoded_bytes());
                    if let Some(tar) = tar.as_deref_mut() {
                        header.set_entry_type(tar::EntryType::Symlink);
                        header.set_mode(0o777);
                        header.set_size(0);
                        tar.append_link(&mut header, &entry.rel, target)
                            .map_err(StreamError::Aborted)?;
                    }
                    files += 1;
                }
                Kind::File { exec, content } => {
                    hasher.update(if *exec { b"x" } else { b"f" });
                    hash_field(&mut hasher, &entry.key);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if *exec { 0o755 } else { 0o644 });
                    let len = match content {
                        Some(data) => {
                            hash_field(&mut hasher, data);
                            if let Some(tar) = tar.as_deref_mut() {
                                header.set_size(data.len() as u64);
                                tar.append_data(&mut header, &entry.rel, data.as_slice())
                                    .map_err(StreamError::Aborted)?;
                            }
                            data.len() as u64
                        }
                        None => {
                            let unreadable = |e: io::Error| {
                                StreamError::Context(unreadable_file(shown_root, &entry.rel, e))
                            };
                            let file = fs::File::open(root.join(&entry.rel)).map_err(unreadable)?;
                            let meta = file.metadata().map_err(unreadable)?;
                            let now = Stamp {
                                len: meta.len(),
                                modified: meta.modified().ok(),
                            };
                            // Changed since hashed (size or mtime)? Sent as it is now;
                            // whether the content differs, the digest at the end tells.
                            if check && stamp.as_ref() != Some(&now) && changed.is_none() {
                                changed = Some(entry.rel.clone());
                            }
                            let len = now.len;
                            *stamp = Some(now);
                            hasher.update(len.to_le_bytes());
                            let mut reader = HashingReader {
                                inner: io::Read::take(file, len),
                                hasher: &mut hasher,
                                read: 0,
                                failed: None,
                                failure: None,
                            };
                            let copied = match tar.as_deref_mut() {
                                Some(tar) => {
                                    header.set_size(len);
                                    let mut buffered =
                                        io::BufReader::with_capacity(READ_CHUNK, &mut reader);
                                    tar.append_data(&mut header, &entry.rel, &mut buffered)
                                        .map(|_| ())
                                }
                                None => {
                                    let mut buf = vec![0u8; READ_CHUNK.min(len as usize + 1)];
                                    loop {
                                        match io::Read::read(&mut reader, &mut buf) {
                                            Ok(0) => break Ok(()),
                                            Ok(_) => {}
                                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                            Err(e) => break Err(e),
                                        }
                                    }
                                }
                            };
                            if let Some(kind) = reader.failed {
                                let message = reader.failure.unwrap_or_default();
                                return Err(unreadable(io::Error::new(kind, message)));
                            }
                            copied.map_err(StreamError::Aborted)?;
                            if reader.read != len {
                                return Err(StreamError::Context(changed_error(
                                    shown_root,
                                    Some(&entry.rel),
                                )));
                            }
                            len
                        }
                    };
                    files += 1;
                    bytes += len;
                }
            }
        }
        Ok(Totals {
            digest: format!("sha256:{:x}", hasher.finalize()),
            files,
            bytes,
            changed,
        })
    }
}

/// What one pass over the entries adds up to.
struct Totals {
    digest: String,
    files: usize,
    bytes: u64,
    /// The first file whose size or mtime differs from the hashing pass's.
    changed: Option<PathBuf>,
}

fn changed_error(shown_root: &Path, rel: Option<&Path>) -> UserError {
    let what = match rel {
        Some(rel) => format!(
            "`{}` in the build context `{}`",
            shown(rel),
            shown_root.display()
        ),
        None => format!("a file in the build context `{}`", shown_root.display()),
    };
    UserError::failed(format!(
        "{what} changed while mlcd read it: the image would not match its build id, so the build was stopped"
    ))
    .hint("let whatever writes into the build context finish (or list its output in .dockerignore), then run the build again")
}

/// Hashes the sorted entries (reading files from disk in chunks, holding none whole).
fn hash_context(
    root: &Path,
    shown_root: &Path,
    entries: Vec<Entry>,
    dockerfile: String,
) -> Result<BuildContext, UserError> {
    let mut ctx = BuildContext {
        dockerfile,
        files: 0,
        bytes: 0,
        digest: String::new(),
        root: root.to_path_buf(),
        shown_root: shown_root.to_path_buf(),
        entries,
        stamps: Vec::new(),
    };
    let mut stamps = Vec::new();
    let totals = ctx
        .visit(None::<&mut tar::Builder<io::Sink>>, &mut stamps, false)
        .map_err(UserError::from)?;
    ctx.stamps = stamps;
    ctx.files = totals.files;
    ctx.bytes = totals.bytes;
    ctx.digest = totals.digest;
    Ok(ctx)
}

/// How big one chunk of the streamed tar is.
const STREAM_CHUNK: usize = 512 << 10;
/// How many chunks may wait between the tar writer and the engine (so at most
/// `STREAM_CHUNK * (STREAM_DEPTH + 1)` bytes of the context are in memory).
const STREAM_DEPTH: usize = 4;

/// A [`io::Write`] that hands fixed-size chunks to a channel, blocking while it is full.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<io::Result<hyper::body::Bytes>>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK));
        self.tx.blocking_send(Ok(chunk.into())).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = STREAM_CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == STREAM_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The context's tar as a stream of chunks, written by a blocking task that reads
/// the files as the engine takes them (memory stays at a few chunks, whatever the
/// context's size). The task's result says whether the whole tar was sent; when it
/// fails with [`StreamError::Context`] the stream ends with an error first, so the
/// engine sees a truncated context and builds nothing.
pub fn spawn_tar(
    ctx: std::sync::Arc<BuildContext>,
) -> (
    impl futures_util::Stream<Item = io::Result<hyper::body::Bytes>> + Send + 'static,
    tokio::task::JoinHandle<Result<(), StreamError>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_DEPTH);
    let task = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            buf: Vec::with_capacity(STREAM_CHUNK),
            tx: tx.clone(),
        };
        match ctx.write_tar(writer) {
            Ok(mut writer) => io::Write::flush(&mut writer).map_err(StreamError::Aborted),
            Err(e) => {
                if let StreamError::Context(u) = &e {
                    let _ = tx.blocking_send(Err(io::Error::other(u.message.clone())));
                }
                Err(e)
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (stream, task)
}

/// Hashes a length-prefixed field, so that no two entry lists hash the same bytes.
fn hash_field(hasher: &mut Sha256, field: &[u8]) {
    hasher.update((field.len() as u64).to_le_bytes());
    hasher.update(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, Path::new(".dockerignore")).expect("patterns parse")
    }

    #[track_caller]
    fn assert_excluded(ignore: &Ignore, paths: &[&str]) {
        for path in paths {
            assert!(ignore.is_excluded(path), "`{path}` should be excluded");
        }
    }

    #[track_caller]
    fn assert_sent(ignore: &Ignore, paths: &[&str]) {
        for path in paths {
            assert!(!ignore.is_excluded(path), "`{path}` should be sent");
        }
    }

    #[test]
    fn star_matches_within_one_directory_at_the_root_only_as_docker_does() {
        let i = ignore("*.pyc\n");
        assert_excluded(&i, &["a.pyc", ".hidden.pyc"]);
        assert_sent(&i, &["pkg/a.pyc", "a.py", "a.pyc.txt"]);
    }

    #[test]
    fn double_star_matches_any_number_of_directories() {
        let i = ignore("**/*.pyc\n**/__pycache__\n");
        assert_excluded(
            &i,
            &[
                "a.pyc",
                "pkg/sub/a.pyc",
                "__pycache__",
                "__pycache__/x.cpython-311.pyc",
                "pkg/__pycache__/mod.txt",
            ],
        );
        assert_sent(&i, &["pkg/a.py", "pkg/__pycache__.txt"]);

        let i = ignore("models/**/*.bin\n");
        assert_excluded(&i, &["models/a.bin", "models/x/y/a.bin"]);
        assert_sent(&i, &["a.bin", "other/models/a.bin"]);
    }

    #[test]
    fn a_pattern_matching_a_directory_excludes_everything_below_it() {
        for text in ["data/\n", "data\n", "/data\n", "./data/\n"] {
            let i = ignore(text);
            assert_excluded(&i, &["data", "data/a.csv", "data/raw/2024/b.parquet"]);
            assert_sent(&i, &["database.csv", "src/data/a.csv", "datax/a"]);
        }
        let i = ignore("*/cache\n");
        assert_excluded(&i, &["a/cache", "a/cache/deep/file"]);
        assert_sent(&i, &["cache/file", "a/b/cache/file"]);
    }

    #[test]
    fn exception_after_a_directory_re_includes_one_file() {
        let i = ignore("data\n!data/keep.csv\n");
        assert_excluded(&i, &["data", "data/other.csv", "data/sub/keep.csv"]);
        assert_sent(&i, &["data/keep.csv"]);
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        let i = ignore("!keep.csv\n*.csv\n");
        assert_excluded(&i, &["keep.csv", "a.csv"]);

        let i = ignore("*.csv\n!keep.csv\n");
        assert_excluded(&i, &["a.csv"]);
        assert_sent(&i, &["keep.csv"]);

        let i = ignore("*.md\n!README*.md\nREADME-secret.md\n");
        assert_excluded(&i, &["CHANGES.md", "README-secret.md"]);
        assert_sent(&i, &["README.md", "README-dev.md"]);
    }

    #[test]
    fn leading_slash_anchors_nothing_more_than_the_root_already_does() {
        let i = ignore("/build\n");
        assert_excluded(&i, &["build", "build/out.o"]);
        assert_sent(&i, &["src/build", "src/build/out.o"]);
    }

    #[test]
    fn comments_blank_lines_and_whitespace_are_skipped_and_paths_cleaned() {
        let i = ignore(
            "\u{feff}# a comment\n\n   \n  logs  \r\n ! logs/keep.txt\nsrc//gen/../tmp/./x\n",
        );
        assert_excluded(&i, &["logs/a.txt", "src/tmp/x"]);
        assert_sent(&i, &["logs/keep.txt", "# a comment", "src/gen/tmp/x"]);
        assert_eq!(i.patterns.len(), 3);
    }

    #[test]
    fn question_mark_and_classes_follow_go_filepath_match() {
        let i = ignore("file?.txt\nrun[0-9]\nx[^a]\n");
        assert_excluded(&i, &["file1.txt", "run7", "xb"]);
        assert_sent(&i, &["file10.txt", "dir/file1.txt", "runx", "xa"]);
        // `?` does not match `/`.
        assert_sent(&ignore("a?b\n"), &["a/b"]);
    }

    #[test]
    fn braces_are_literal_as_in_go_not_alternatives() {
        let i = ignore("{a,b}.txt\n");
        assert_excluded(&i, &["{a,b}.txt"]);
        assert_sent(&i, &["a.txt", "b.txt"]);
        assert_excluded(&ignore("\\*.txt\n"), &["*.txt"]);
        assert_sent(&ignore("\\*.txt\n"), &["a.txt"]);
    }

    #[test]
    fn patterns_outside_the_context_match_nothing() {
        let i = ignore("../secrets\n/\n.\n");
        assert_sent(&i, &["secrets", "a", "a/b"]);
    }

    #[test]
    fn bad_patterns_name_the_file_and_line() {
        let err = Ignore::parse("ok\n!\n", Path::new("/ws/.dockerignore")).unwrap_err();
        assert!(
            err.message.contains("`/ws/.dockerignore` line 2"),
            "{}",
            err.message
        );
        assert_eq!(err.location.as_ref().map(|l| l.line), Some(2));

        let err = Ignore::parse("# c\ndata/[a-\n", Path::new(".dockerignore")).unwrap_err();
        assert!(
            err.message
                .contains("line 2: `data/[a-` is not a valid pattern"),
            "{}",
            err.message
        );
        assert!(err
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("docs.docker.com"));
    }

    #[test]
    fn excluded_directories_are_entered_only_when_an_exception_could_reach_inside() {
        let i = ignore("data\n.git\n!data/keep.csv\n");
        assert!(i.may_include_below(Path::new("data")));
        assert!(!i.may_include_below(Path::new(".git")));
        assert!(!i.may_include_below(Path::new("data/sub")));

        let i = ignore("*\n!**/keep.csv\n");
        assert!(i.may_include_below(Path::new("anything/deep")));

        let i = ignore("models\n!models/*/config.json\n");
        assert!(i.may_include_below(Path::new("models")));
        assert!(i.may_include_below(Path::new("models/bert")));
        assert!(!i.may_include_below(Path::new("models/bert/weights")));
        assert_sent(&i, &["models/bert/config.json"]);
        assert_excluded(&i, &["models/bert/weights.bin"]);

        let i = ignore("data\n!data\n");
        assert!(!i.may_include_below(Path::new("logs")));
    }

    #[test]
    fn go_clean_matches_go() {
        for (given, want) in [
            ("a/b/", "a/b"),
            ("./a", "a"),
            ("a//b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("", "."),
            ("a/..", "."),
        ] {
            assert_eq!(go_clean(given), want, "{given}");
        }
    }

    #[test]
    fn symlink_targets_are_resolved_lexically_from_their_directory() {
        assert!(lexical_depth_ok(Path::new("a/b"), Path::new("../c")).is_some());
        assert!(lexical_depth_ok(Path::new("a"), Path::new("../../etc")).is_none());
        assert!(lexical_depth_ok(Path::new(""), Path::new("x/../../y")).is_none());
        assert!(lexical_depth_ok(Path::new("a"), Path::new("./b/./c")).is_some());
    }
}
