//! The build context as `mlcd build` sends it: `.dockerignore` honoured, a tar that
//! reads back with the expected entries, and a digest that moves with what is sent and
//! nothing else.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use mlcd::image::context::{pack, BuildContext};

/// A temporary build context.
struct Ctx {
    dir: tempfile::TempDir,
}

impl Ctx {
    fn new(files: &[(&str, &str)]) -> Self {
        let ctx = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for (path, content) in files {
            ctx.write(path, content);
        }
        ctx
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn pack(&self) -> BuildContext {
        pack(&self.root(), &self.path("Dockerfile")).expect("pack")
    }
}

/// One entry read back from the tar.
#[derive(Debug, PartialEq)]
enum Item {
    Dir,
    File { mode: u32, content: String },
    Link(String),
}

fn read_tar(tar: &[u8]) -> BTreeMap<String, Item> {
    let mut archive = tar::Archive::new(tar);
    let mut items = BTreeMap::new();
    let mut order = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let header = entry.header();
        assert_eq!(header.mtime().unwrap(), 0, "mtime");
        assert_eq!(header.uid().unwrap(), 0, "uid");
        assert_eq!(header.gid().unwrap(), 0, "gid");
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = header.mode().unwrap();
        let item = match header.entry_type() {
            tar::EntryType::Directory => {
                assert_eq!(mode, 0o755, "{path}");
                Item::Dir
            }
            tar::EntryType::Symlink => Item::Link(
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            tar::EntryType::Regular => {
                let mut content = String::new();
                std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
                assert!(mode == 0o644 || mode == 0o755, "{path}: mode {mode:o}");
                Item::File { mode, content }
            }
            other => panic!("unexpected entry type {other:?} for {path}"),
        };
        let path = path.trim_end_matches('/').to_string();
        order.push(path.clone());
        items.insert(path, item);
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "tar entries are in sorted order");
    items
}

fn paths(ctx: &BuildContext) -> Vec<String> {
    read_tar(&ctx.tar().unwrap()).into_keys().collect()
}

fn file(content: &str) -> Item {
    Item::File {
        mode: 0o644,
        content: content.to_string(),
    }
}

const MODEL: &[(&str, &str)] = &[
    ("Dockerfile", "FROM python:3.11\nCOPY . /app\n"),
    ("train.py", "print('train')\n"),
    ("pkg/model.py", "class Model: ...\n"),
    ("pkg/__pycache__/model.cpython-311.pyc", "bytecode"),
    ("data/train.csv", "a,b\n1,2\n"),
    ("data/keep.csv", "kept\n"),
    ("notes.pyc", "root bytecode"),
    (
        ".dockerignore",
        "# build outputs\n**/__pycache__\n*.pyc\ndata/\n!data/keep.csv\n/build\n",
    ),
    ("build/out.bin", "artifact"),
    ("src/build/keep.txt", "not anchored here"),
];

#[test]
fn ignored_files_are_absent_from_the_tar() {
    let ctx = Ctx::new(MODEL);
    let packed = ctx.pack();
    assert_eq!(
        paths(&packed),
        [
            ".dockerignore",
            "Dockerfile",
            "data/keep.csv",
            "pkg",
            "pkg/model.py",
            "src",
            "src/build",
            "src/build/keep.txt",
            "train.py",
        ]
    );
    assert_eq!(packed.dockerfile, "Dockerfile");
    assert_eq!(packed.files, 6);
    let items = read_tar(&packed.tar().unwrap());
    assert_eq!(items["data/keep.csv"], file("kept\n"));
    let sent: u64 = items
        .values()
        .map(|i| match i {
            Item::File { content, .. } => content.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(packed.bytes, sent);
    assert!(packed.digest.starts_with("sha256:") && packed.digest.len() == 7 + 64);
}

#[test]
fn the_dockerfile_and_dockerignore_are_sent_even_when_ignored() {
    let ctx = Ctx::new(&[
        ("docker/train.Dockerfile", "FROM scratch\n"),
        ("docker/other", "x"),
        ("app.py", "1"),
        (".dockerignore", ".dockerignore\ndocker\n"),
    ]);
    let packed = pack(&ctx.root(), &ctx.path("docker/train.Dockerfile")).unwrap();
    assert_eq!(packed.dockerfile, "docker/train.Dockerfile");
    assert_eq!(
        paths(&packed),
        [".dockerignore", "app.py", "docker/train.Dockerfile"]
    );
}

#[test]
fn digest_is_stable_across_packs_and_mtime_changes() {
    let ctx = Ctx::new(MODEL);
    let first = ctx.pack();
    let second = ctx.pack();
    assert_eq!(first.digest, second.digest);
    assert_eq!(
        first.tar().unwrap(),
        second.tar().unwrap(),
        "the tar itself is byte-for-byte the same"
    );

    let later = SystemTime::now() + Duration::from_secs(3600);
    for rel in ["train.py", "pkg/model.py", "Dockerfile"] {
        fs::File::options()
            .write(true)
            .open(ctx.path(rel))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    let touched = ctx.pack();
    assert_eq!(first.digest, touched.digest);
    // The context hashed before the touch still streams: only the content counts.
    assert_eq!(first.tar().unwrap(), touched.tar().unwrap());
}

#[test]
fn a_file_changed_after_hashing_stops_the_stream_naming_the_file() {
    let ctx = Ctx::new(MODEL);
    let packed = ctx.pack();
    // Same size, other content: the tar would not match the build id.
    let before = fs::read_to_string(ctx.path("train.py")).unwrap();
    ctx.write("train.py", &before.replace("train", "TRAIN"));
    let err = packed.tar().unwrap_err();
    assert!(
        err.message.contains("`train.py` in the build context")
            && err.message.contains("changed while mlcd read it"),
        "{}",
        err.message
    );
    assert!(err.hint.unwrap().contains("run the build again"));

    // Shorter than when it was hashed: refused as well.
    let packed = ctx.pack();
    ctx.write("pkg/model.py", "x");
    let err = packed.tar().unwrap_err();
    assert!(err.message.contains("`pkg/model.py`"), "{}", err.message);
}

#[test]
fn the_streamed_tar_is_the_tar() {
    let ctx = Ctx::new(MODEL);
    // A file larger than the stream's chunks and read buffer.
    let big: String = (0..300_000).map(|i| format!("{i}\n")).collect();
    ctx.write("models/big.txt", &big);
    let packed = std::sync::Arc::new(ctx.pack());
    let whole = packed.tar().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let streamed = rt.block_on(async {
        use futures_util::StreamExt;
        let (stream, task) = mlcd::image::context::spawn_tar(packed.clone());
        let chunks: Vec<_> = stream.collect().await;
        task.await
            .unwrap()
            .map_err(mlcd::error::UserError::from)
            .unwrap();
        let mut out = Vec::new();
        for c in chunks {
            let c = c.unwrap();
            assert!(c.len() <= 512 << 10, "chunks are bounded: {}", c.len());
            out.extend_from_slice(&c);
        }
        out
    });
    assert_eq!(streamed, whole);
    assert_eq!(read_tar(&whole)["models/big.txt"], file(&big));
    assert!(packed.bytes > big.len() as u64, "{}", packed.bytes);
}

#[test]
fn digest_does_not_depend_on_creation_order() {
    let mut reversed = MODEL.to_vec();
    reversed.reverse();
    assert_eq!(
        Ctx::new(MODEL).pack().digest,
        Ctx::new(&reversed).pack().digest
    );
}

#[test]
fn digest_changes_when_a_sent_file_changes() {
    let ctx = Ctx::new(MODEL);
    let before = ctx.pack().digest;

    ctx.write("pkg/model.py", "class Model: pass\n");
    let edited = ctx.pack().digest;
    assert_ne!(before, edited, "content change");

    fs::rename(ctx.path("train.py"), ctx.path("fit.py")).unwrap();
    let renamed = ctx.pack().digest;
    assert_ne!(edited, renamed, "rename");

    ctx.write("data/keep.csv", "kept, but changed\n");
    assert_ne!(renamed, ctx.pack().digest, "re-included file");
}

#[test]
fn digest_is_unchanged_when_an_ignored_file_changes() {
    let ctx = Ctx::new(MODEL);
    let before = ctx.pack().digest;
    ctx.write("data/train.csv", "a,b\n3,4\n");
    ctx.write("pkg/__pycache__/model.cpython-311.pyc", "new bytecode");
    ctx.write("build/new.bin", "new artifact");
    ctx.write("data/fresh/more.csv", "x");
    assert_eq!(before, ctx.pack().digest);
}

#[test]
fn digest_changes_with_the_dockerfile_chosen() {
    let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("serve.Dockerfile", "FROM b\n")]);
    let train = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap();
    let serve = pack(&ctx.root(), &ctx.path("serve.Dockerfile")).unwrap();
    assert_eq!(serve.dockerfile, "serve.Dockerfile");
    assert_ne!(train.digest, serve.digest);
}

#[test]
fn dockerfile_outside_the_context_is_sent_as_mlcd_dockerfile() {
    let ctx = Ctx::new(&[("app.py", "1"), (".dockerignore", "*.log\n")]);
    let outside = ctx.dir.path().join("docker/Dockerfile");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    fs::write(&outside, "FROM python:3.11\n").unwrap();

    let packed = pack(&ctx.root(), &outside).unwrap();
    assert_eq!(packed.dockerfile, ".mlcd/Dockerfile");
    let items = read_tar(&packed.tar().unwrap());
    assert_eq!(items[".mlcd/Dockerfile"], file("FROM python:3.11\n"));
    // Listed in the sent .dockerignore, so `COPY . .` does not put it in the image.
    assert_eq!(items[".dockerignore"], file("*.log\n\n.mlcd/Dockerfile\n"));
    assert_eq!(
        fs::read_to_string(ctx.path(".dockerignore")).unwrap(),
        "*.log\n"
    );

    let before = packed.digest;
    fs::write(&outside, "FROM python:3.12\n").unwrap();
    assert_ne!(before, pack(&ctx.root(), &outside).unwrap().digest);
}

#[test]
fn dockerfile_outside_a_context_without_dockerignore_gets_one() {
    let ctx = Ctx::new(&[("app.py", "1")]);
    let outside = ctx.dir.path().join("Dockerfile");
    fs::write(&outside, "FROM scratch\n").unwrap();
    let items = read_tar(&pack(&ctx.root(), &outside).unwrap().tar().unwrap());
    assert_eq!(
        items[".dockerignore"],
        file(".dockerignore\n.mlcd/Dockerfile\n")
    );
}

#[test]
fn missing_dockerfile_is_refused_naming_it() {
    let ctx = Ctx::new(&[("app.py", "1")]);
    let err = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap_err();
    assert!(err.message.contains("Dockerfile"), "{}", err.message);
    assert!(err.hint.is_some());
}

#[test]
fn bad_dockerignore_pattern_is_refused_with_its_line() {
    let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), (".dockerignore", "ok\n[oops\n")]);
    let err = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap_err();
    assert!(
        err.message.contains(".dockerignore` line 2"),
        "{}",
        err.message
    );
    assert_eq!(err.location.map(|l| l.line), Some(2));
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn symlink_escaping_the_context_is_refused_with_a_clear_message() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("data/real.csv", "x")]);
        symlink("/etc", ctx.path("data/x")).unwrap();
        let err = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap_err();
        assert!(
            err.message
                .contains("symlink `data/x` pointing outside it to `/etc`"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("Docker would not follow it"),
            "{}",
            err.message
        );
        assert!(err.hint.as_deref().unwrap().contains("copy the file"));

        fs::remove_file(ctx.path("data/x")).unwrap();
        symlink("../../outside.csv", ctx.path("data/x")).unwrap();
        let err = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap_err();
        assert!(
            err.message
                .contains("symlink `data/x` pointing outside it to `../../outside.csv`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn escaping_symlink_that_is_ignored_is_not_an_error() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), (".dockerignore", ".venv\n")]);
        fs::create_dir_all(ctx.path(".venv/bin")).unwrap();
        symlink("/usr/bin/python3", ctx.path(".venv/bin/python")).unwrap();
        assert_eq!(paths(&ctx.pack()), [".dockerignore", "Dockerfile"]);
    }

    #[test]
    fn in_context_symlink_is_kept_as_a_symlink() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("data/v2/train.csv", "x")]);
        symlink("v2", ctx.path("data/latest")).unwrap();
        symlink("../Dockerfile", ctx.path("data/Dockerfile.link")).unwrap();
        let abs_inside = ctx.path("data/v2/train.csv");
        symlink(&abs_inside, ctx.path("abs")).unwrap();

        let packed = ctx.pack();
        let items = read_tar(&packed.tar().unwrap());
        assert_eq!(items["data/latest"], Item::Link("v2".into()));
        assert_eq!(
            items["data/Dockerfile.link"],
            Item::Link("../Dockerfile".into())
        );
        assert_eq!(
            items["abs"],
            Item::Link(abs_inside.to_string_lossy().into_owned())
        );
        assert!(!items.contains_key("data/latest/train.csv"), "not followed");
        assert_eq!(packed.files, 5);

        let before = packed.digest;
        fs::remove_file(ctx.path("data/latest")).unwrap();
        fs::create_dir_all(ctx.path("data/v3")).unwrap();
        symlink("v3", ctx.path("data/latest")).unwrap();
        assert_ne!(before, ctx.pack().digest, "symlink target is in the digest");
    }

    #[test]
    fn executable_bit_is_sent_and_in_the_digest() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("serve", "#!/bin/sh\n")]);
        let before = ctx.pack();
        assert_eq!(
            read_tar(&before.tar().unwrap())["serve"],
            file("#!/bin/sh\n")
        );

        fs::set_permissions(ctx.path("serve"), fs::Permissions::from_mode(0o700)).unwrap();
        let after = ctx.pack();
        assert_eq!(
            read_tar(&after.tar().unwrap())["serve"],
            Item::File {
                mode: 0o755,
                content: "#!/bin/sh\n".into()
            }
        );
        assert_ne!(before.digest, after.digest);

        // Other permission bits are not sent, so they do not change the digest.
        fs::set_permissions(ctx.path("serve"), fs::Permissions::from_mode(0o751)).unwrap();
        assert_eq!(after.digest, ctx.pack().digest);
    }

    #[test]
    fn sockets_are_skipped() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n")]);
        let _listener = std::os::unix::net::UnixListener::bind(ctx.path("agent.sock")).unwrap();
        assert_eq!(paths(&ctx.pack()), ["Dockerfile"]);
    }

    #[test]
    fn context_given_through_a_symlink_still_finds_its_dockerfile() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("app.py", "1")]);
        let alias = ctx.dir.path().join("alias");
        symlink(ctx.root(), &alias).unwrap();
        let packed = pack(&alias, &ctx.path("Dockerfile")).unwrap();
        assert_eq!(packed.dockerfile, "Dockerfile");
        assert_eq!(packed.digest, ctx.pack().digest);
    }

    #[test]
    fn path_longer_than_a_tar_header_survives() {
        let long = format!("{}/weights.bin", "deep".repeat(40));
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), (long.as_str(), "w")]);
        assert_eq!(read_tar(&ctx.pack().tar().unwrap())[&long], file("w"));
    }

    /// Unreadable files only fail for a user the permissions apply to.
    #[test]
    fn unreadable_file_is_named() {
        let ctx = Ctx::new(&[("Dockerfile", "FROM a\n"), ("secret.bin", "x")]);
        fs::set_permissions(ctx.path("secret.bin"), fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(ctx.path("secret.bin")).is_ok() {
            return; // running as root: permissions do not apply
        }
        let err = pack(&ctx.root(), &ctx.path("Dockerfile")).unwrap_err();
        assert!(
            err.message.contains("cannot read `secret.bin`"),
            "{}",
            err.message
        );
    }
}
