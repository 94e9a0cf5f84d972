"""Real git repositories behind the fake GitHub's contents API.

Each repository the fake serves contents for is a bare git repository on disk,
written with git's own plumbing (hash-object, mktree, commit-tree, update-ref with
the old value, so a concurrent update loses as it does on GitHub): a test reads the
result with `git log` / `git show` and builds it with `kubectl kustomize`.

Control (see server.py): POST /_fake/git/init seeds a repository from a directory;
GET /_fake/git lists them; POST /_fake/git/race makes the next contents update
lose against a commit another writer pushes just before it.
"""

import base64
import os
import shutil
import subprocess
import tempfile

BOT = ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com")


class GitError(Exception):
    pass


def git(gitdir, *args, stdin=None, env=None):
    e = dict(os.environ)
    e.update({"GIT_DIR": gitdir, "GIT_CONFIG_NOSYSTEM": "1", "HOME": gitdir})
    if env:
        e.update(env)
    p = subprocess.run(["git", *args], input=stdin, capture_output=True, env=e)
    if p.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


class Repos:
    def __init__(self, root=None):
        self.root = root  # made on the first init (most fakes never hold a repository)
        self.owned = root is None
        self.repos = {}  # "o/r" -> bare git dir
        self.races = {}  # "o/r" -> [{"path","content","message","branch"}]

    def close(self):
        """Removes the repositories' directory when the fake made it."""
        if self.owned and self.root:
            shutil.rmtree(self.root, ignore_errors=True)

    def init(self, full, seed_dir, branch="main"):
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="fake-github-git-")
        gitdir = os.path.join(self.root, full.replace("/", "__") + ".git")
        if os.path.exists(gitdir):
            subprocess.run(["rm", "-rf", gitdir], check=True)
        subprocess.run(["git", "init", "--bare", "-q", "-b", branch, gitdir], check=True, capture_output=True)
        files = {}
        for top, _dirs, names in os.walk(seed_dir):
            for n in names:
                full_path = os.path.join(top, n)
                rel = os.path.relpath(full_path, seed_dir)
                with open(full_path, "rb") as f:
                    files[rel] = f.read()
        tree = None
        for rel, data in sorted(files.items()):
            blob = git(gitdir, "hash-object", "-w", "--stdin", stdin=data).decode().strip()
            tree = self._put(gitdir, tree, rel.split(os.sep), blob)
        commit = self._commit(gitdir, tree, None, "Initial manifests", ("Test", "test@example.com"))
        git(gitdir, "update-ref", f"refs/heads/{branch}", commit)
        self.repos[full] = gitdir
        return {"repo": full, "git_dir": gitdir, "commit": commit}

    def gitdir(self, full):
        return self.repos.get(full)

    def head(self, full, branch):
        gd = self.repos[full]
        try:
            return git(gd, "rev-parse", "--verify", "-q", f"refs/heads/{branch}").decode().strip()
        except GitError:
            return None

    def read(self, full, ref, path):
        """(blob sha, bytes) of path at ref, or None."""
        gd = self.repos[full]
        try:
            line = git(gd, "ls-tree", ref, "--", path).decode().strip()
        except GitError:
            return None
        if not line:
            return None
        meta, _name = line.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind != "blob":
            return ("tree", sha)
        return (sha, git(gd, "cat-file", "blob", sha))

    def _put(self, gitdir, tree, parts, blob):
        """A new tree: `tree` with parts/… set to blob."""
        entries = {}
        if tree:
            for line in git(gitdir, "ls-tree", tree).decode().splitlines():
                meta, name = line.split("\t", 1)
                entries[name] = meta
        head, rest = parts[0], parts[1:]
        if rest:
            sub = None
            if head in entries and entries[head].split()[1] == "tree":
                sub = entries[head].split()[2]
            entries[head] = f"040000 tree {self._put(gitdir, sub, rest, blob)}"
        else:
            entries[head] = f"100644 blob {blob}"
        text = "".join(f"{meta}\t{name}\n" for name, meta in sorted(entries.items()))
        return git(gitdir, "mktree", stdin=text.encode()).decode().strip()

    def _commit(self, gitdir, tree, parent, message, who):
        env = {
            "GIT_AUTHOR_NAME": who[0],
            "GIT_AUTHOR_EMAIL": who[1],
            "GIT_COMMITTER_NAME": who[0],
            "GIT_COMMITTER_EMAIL": who[1],
        }
        args = ["commit-tree", tree]
        if parent:
            args += ["-p", parent]
        return git(gitdir, *args, stdin=message.encode(), env=env).decode().strip()

    def write(self, full, branch, path, data, message, who=BOT):
        """Commits data at path on branch; returns (commit, tree, blob, parent).
        Raises GitError when the branch moved meanwhile (update-ref's old value)."""
        gd = self.repos[full]
        parent = self.head(full, branch)
        tree = git(gd, "rev-parse", f"{parent}^{{tree}}").decode().strip() if parent else None
        blob = git(gd, "hash-object", "-w", "--stdin", stdin=data).decode().strip()
        new_tree = self._put(gd, tree, path.split("/"), blob)
        commit = self._commit(gd, new_tree, parent, message, who)
        git(gd, "update-ref", f"refs/heads/{branch}", commit, parent or "0" * 40)
        return commit, new_tree, blob, parent

    def resolve(self, full, rev):
        """The commit SHA `rev` names, or None."""
        try:
            return git(self.repos[full], "rev-parse", "--verify", "-q", f"{rev}^{{commit}}").decode().strip()
        except GitError:
            return None

    def is_ancestor(self, full, old, new):
        try:
            git(self.repos[full], "merge-base", "--is-ancestor", old, new)
            return True
        except GitError:
            return False

    def set_ref(self, full, ref, sha, old=None):
        """Points refs/… at sha (old: the value it must have; "" for a new ref)."""
        args = ["update-ref", ref, sha]
        if old is not None:
            args.append(old or "0" * 40)
        git(self.repos[full], *args)

    def delete_ref(self, full, ref):
        git(self.repos[full], "update-ref", "-d", ref)

    def merge(self, full, base, head, message, who=BOT):
        """A merge commit of head into branch base (GitHub's default merge method);
        None when the two conflict. Returns the merge commit's SHA."""
        gd = self.repos[full]
        base_sha = self.head(full, base)
        try:
            tree = git(gd, "merge-tree", "--write-tree", base_sha, head).decode().split()[0]
        except GitError:
            return None
        commit = git(
            gd, "commit-tree", tree, "-p", base_sha, "-p", head, stdin=message.encode(),
            env={"GIT_AUTHOR_NAME": who[0], "GIT_AUTHOR_EMAIL": who[1], "GIT_COMMITTER_NAME": who[0], "GIT_COMMITTER_EMAIL": who[1]},
        ).decode().strip()
        git(gd, "update-ref", f"refs/heads/{base}", commit, base_sha)
        return commit

    def race(self, full, spec):
        self.races.setdefault(full, []).append(spec)

    def run_races(self, full, branch):
        """Commits the pending concurrent pushes (another writer, just before us)."""
        for spec in self.races.pop(full, []):
            self.write(
                full,
                spec.get("branch", branch),
                spec["path"],
                spec["content"].encode(),
                spec.get("message", "A teammate's change"),
                ("Teammate", "teammate@example.com"),
            )


def b64(data):
    """Base64 the way GitHub answers contents: wrapped every 60 characters."""
    s = base64.b64encode(data).decode()
    return "".join(s[i : i + 60] + "\n" for i in range(0, len(s), 60))
