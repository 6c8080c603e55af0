"""Safe outputs: every file and directory kerasllm writes goes through here.

Two promises, kept by every writer (cleaned corpora, token caches,
tokenizers, model directories, run directories, exports):

1. **Never replace what kerasllm did not write.** An existing target is
   refused unless the caller passes `overwrite=True`; even then only a regular
   file, or a directory that holds kerasllm's own metadata file (its
   *marker*: `kerasllm.json`, `kerasllm_tokenizer.json`, `run.json`, ...),
   is replaced. A non-empty foreign directory, the working directory or one
   of its parents, a device node, a FIFO or a symlink never is. An empty
   directory counts as free.
2. **A reader sees the old output or the new one, never half.** Content is
   written under a hidden temporary name beside the target (same file
   system), flushed, then renamed into place. If the writer raises, the
   temporary is removed and the target is left as it was. Directories get the
   usual permissions (`0777 & ~umask`), not `mkdtemp`'s private 0700.

Write errors (disk full, read-only file system, permission denied) surface
as `OutputWriteError`, one sentence naming the path and the reason; refusals
as `OutputExistsError`. Both derive from `OutputError` (an `OSError`).

Example:

>>> check_output_file("clean.jsonl", overwrite=False)  # before the slow work
>>> with atomic_path("clean.jsonl", overwrite=False) as tmp:
...     pathlib.Path(tmp).write_text("...")
>>> with atomic_directory("tok", marker="kerasllm_tokenizer.json") as staging:
...     (staging / "kerasllm_tokenizer.json").write_text("{}")
"""

import contextlib
import errno
import json
import os
import pathlib
import shutil
import stat
import uuid

# The metadata files that mark a directory as written by kerasllm: a model
# directory, a tokenizer, a training run, a token cache, a TFLite export, a
# SavedModel version.
MARKERS = (
    "kerasllm.json",
    "kerasllm_tokenizer.json",
    "run.json",
    "token_cache.json",
    "kerasllm_tflite.json",
    "assets.extra/kerasllm_export.json",
)

_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class OutputError(OSError):
    """An output kerasllm cannot or must not write."""


class OutputExistsError(OutputError, FileExistsError):
    """The target exists and may not be replaced (see the module docstring)."""


class OutputWriteError(OutputError):
    """Writing an output failed (disk full, read-only, no permission)."""


# ---------------------------------------------------------------- checks


def check_output_file(path, *, overwrite=False):
    """Raise `OutputExistsError` unless `path` may be written as a file.

    Free: a path that does not exist. With `overwrite=True`, also an existing
    regular file. Never a directory, a symlink, a device or a FIFO. Call it
    before the expensive work, so a refusal costs nothing.
    """
    path = pathlib.Path(path)
    if not os.path.lexists(path):
        return
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OutputExistsError(
            f"{path} exists and is {_describe(mode)}, not a regular file; "
            "kerasllm will not replace it. Choose another output path."
        )
    if not overwrite:
        raise OutputExistsError(
            f"{path} already exists; pass --overwrite (overwrite=True) to replace it."
        )


def is_kerasllm_directory(path, marker=None):
    """Whether `path` is a directory holding `marker` (any of `MARKERS` if `None`)."""
    path = pathlib.Path(path)
    markers = MARKERS if marker is None else (marker,) if isinstance(marker, str) else marker
    return path.is_dir() and any((path / name).is_file() for name in markers)


def check_output_directory(path, *, overwrite=False, marker=None, what="output"):
    """Raise `OutputExistsError` unless `path` may be (re)written as a directory.

    Free: a missing path or an empty directory (not the working directory or
    one of its parents). With `overwrite=True`, also a directory holding
    `marker` (a file name or a tuple of them; `None`: any of `MARKERS`).

    Returns:
        `True` when `path` holds something that will be replaced.
    """
    path = pathlib.Path(path)
    if not os.path.lexists(path):
        return False
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise OutputExistsError(
            f"{path} exists and is {_describe(mode)}, not a directory; kerasllm "
            f"will not replace it. Choose another {what} directory."
        )
    if _contains_cwd(path):
        raise OutputExistsError(
            f"{path} is the working directory or one of its parents; kerasllm "
            f"never replaces it. Choose a new {what} directory, e.g. {path / what}."
        )
    if not any(path.iterdir()):
        return False
    if not is_kerasllm_directory(path, marker):
        names = marker if marker else "kerasllm's metadata files"
        raise OutputExistsError(
            f"{path} is not empty and was not written by kerasllm (no {names} in "
            f"it); kerasllm will not replace it, even with --overwrite. Choose a "
            f"new {what} directory."
        )
    if not overwrite:
        raise OutputExistsError(
            f"{path} already exists; pass --overwrite (overwrite=True) to replace it."
        )
    return True


# ---------------------------------------------------------------- writers


@contextlib.contextmanager
def atomic_path(path, *, overwrite=True):
    """Yield a temporary path that becomes `path` when the block succeeds.

    Args:
        path: the final file path. Its parent directory is created if needed.
        overwrite: replace an existing regular file. Defaults to `True` (the
            files kerasllm rewrites inside its own directories); commands
            that write a file the user named pass their `--overwrite`.

    Raises:
        OutputExistsError: see `check_output_file`.
        OutputWriteError: the file could not be written.

    Example:

    >>> with atomic_path("out/tokens.npy") as tmp:
    ...     numpy.save(open(tmp, "wb"), array)
    """
    path = os.fspath(path)
    check_output_file(path, overwrite=overwrite)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with write_errors(path):
            os.makedirs(directory, exist_ok=True)
            # Created with the umask's permissions, as any file the user makes.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        with write_errors(path):
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(directory, *, overwrite=False, marker=None):
    """Yield a staging directory that replaces `directory` on success.

    The staging directory sits beside the target (same file system), so the
    final rename is atomic. An existing target is checked first with
    `check_output_directory(directory, overwrite=overwrite, marker=marker)`.
    On error the staging directory is removed and the target left as it was.

    Args:
        directory: the directory to write.
        overwrite: replace an existing kerasllm directory. Defaults to `False`.
        marker: the metadata file that shows kerasllm wrote an existing
            `directory` (`None`: any of `MARKERS`).

    Yields:
        The staging directory, a `pathlib.Path`.
    """
    target = pathlib.Path(os.path.abspath(directory))
    check_output_directory(target, overwrite=overwrite, marker=marker)
    staging = None
    try:
        with write_errors(target):
            staging = make_sibling_directory(target, "tmp")
        with write_errors(target):
            yield staging
            replace_directory(staging, target)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def make_sibling_directory(target, tag):
    """A new hidden directory beside `target`, with the usual permissions."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}")
        try:
            path.mkdir()  # 0777 & ~umask, like `mkdir`
            return path
        except FileExistsError:
            continue


def replace_directory(new, target):
    """Rename `new` to `target`; an existing `target` is moved aside, then removed.

    A directory cannot be renamed over a non-empty one, so the old one goes
    aside first: at every moment the old or the new directory is in place.
    """
    target = pathlib.Path(target)
    if not os.path.lexists(target):
        os.replace(new, target)
        return
    aside = make_sibling_directory(target, "old")
    os.replace(target, aside / "previous")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside / "previous", target)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def atomic_write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def atomic_write_json(path, obj, *, indent=2, sort_keys=True):
    """Write `obj` as UTF-8 JSON (non-ASCII kept readable) atomically."""
    atomic_write_text(
        path, json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys) + "\n"
    )


@contextlib.contextmanager
def write_errors(path):
    """Turn a disk-full / read-only / permission `OSError` into `OutputWriteError`.

    Permission errors count only for files under `path`'s directory (a
    corpus that cannot be read is the reader's error, not the output's).
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        reason = _WRITE_ERRNOS.get(error.errno)
        if reason is None or (
            error.errno in (errno.EACCES, errno.EPERM) and not _under(error.filename, path)
        ):
            raise
        raise output_write_error(path, error) from error


def output_write_error(path, error):
    """The `OutputWriteError` for an `OSError` raised while writing `path`."""
    reason = _WRITE_ERRNOS.get(error.errno, error.strerror or str(error))
    result = OutputWriteError(
        f"Cannot write {path}: {reason}. The previous output there, if any, is "
        "unchanged; free some space or choose a writable location."
    )
    result.errno = error.errno
    return result


# ---------------------------------------------------------------- helpers


def _fsync(path):
    # Flush the data before the rename, so a crash cannot leave a renamed but
    # empty file behind.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _under(filename, path):
    if not filename:
        return True
    try:
        base = pathlib.Path(os.path.abspath(path))
        name = pathlib.Path(os.path.abspath(os.fsdecode(filename)))
    except (TypeError, ValueError):
        return False
    return name == base or base in name.parents or base.parent in name.parents


def _contains_cwd(path):
    try:
        here = pathlib.Path.cwd().resolve()
    except OSError:
        return False
    path = pathlib.Path(path).resolve()
    return path == here or path in here.parents


def _describe(mode):
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a regular file"
