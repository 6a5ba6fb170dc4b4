"""The domain words (knowledge/words.yaml) as a Sudachi user dictionary, compiled and cached.

Sudachi splits 外来機能報告 into 外来 + 機能 + 報告; its user dictionary is the library's way
to keep such names whole. Compiling one takes about 3 s, so it is done once per word list and
Sudachi version and kept where the next start will find it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from importlib.resources import files
from pathlib import Path

from sudachipy import sudachipy as sudachi_build


def user_dictionary(words: dict[str, str], cache_dir: Path | None = None, *,
                    reuse: bool = True) -> Path:
    """The domain words compiled into a Sudachi user dictionary, built once per content.

    Building takes about 3 s (Sudachi resolves every word against the system dictionary), so
    the result is cached under a name derived from the words and both Sudachi versions; a
    changed word list or dictionary update builds a new one. A prebuilt file is used wherever
    it is found (even read-only); a new one is written to a temporary name and renamed, so
    processes starting together never read a half-written file."""
    lexicon = "".join(
        f"{w},5146,5146,3000,{w},名詞,普通名詞,一般,*,*,*,{r},{w},*,A,*,*,*\n"
        for w, r in sorted(words.items()))
    versions = [importlib.metadata.version(p) for p in ("sudachipy", "sudachidict-core")]
    key = hashlib.sha256((lexicon + repr(versions)).encode()).hexdigest()[:16]
    name = f"sudachi-user-{key}.dic"
    places = cache_dirs(cache_dir)
    if reuse and (found := cached_file(places, name)) is not None:
        return found
    writable = writable_cache(places)
    # Nowhere to keep it: build into a private directory (rebuilt on every start).
    target = (writable or Path(tempfile.mkdtemp(prefix="kakaritsuke-bot-"))) / name
    system = Path(str(files("sudachidict_core").joinpath("resources", "system.dic")))
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source, built = Path(work) / "words.csv", Path(work) / "user.dic"
        source.write_text(lexicon, encoding="utf-8")
        sudachi_build.build_user_dic(system=system, lex=[source], output=built,
                                     description="kakaritsuke-bot domain words")
        os.replace(built, target)
    forget_old(target)
    return target


STALE_AFTER_SECONDS = 7 * 24 * 3600


def forget_old(current: Path, pattern: str = "sudachi-user-*.dic") -> None:
    """Remove files cached for earlier contents once nothing can still be starting with
    them (a week on); a running process has its copy loaded already."""
    cutoff = current.stat().st_mtime - STALE_AFTER_SECONDS
    for old in current.parent.glob(pattern):
        try:
            if old != current and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            continue  # another process removed it, or it is not ours to remove


def cache_dirs(explicit: Path | None) -> list[Path]:
    """Where a cached file may be: the configured place alone, else the user's cache
    directory ($XDG_CACHE_HOME or ~/.cache) and a per-user directory under the temp dir."""
    if explicit:
        return [explicit]
    places: list[Path] = []
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        places.append(base / "kakaritsuke-bot")
    except RuntimeError:  # no HOME and no passwd entry (some containers)
        pass
    places.append(Path(tempfile.gettempdir()) / f"kakaritsuke-bot-{os.getuid()}")
    return places


def cached_file(places: list[Path], name: str) -> Path | None:
    """The first copy of a cached file in a place we trust; None when there is none."""
    return next((d / name for d in places if (d / name).is_file() and trusted(d)), None)


def writable_cache(places: list[Path]) -> Path | None:
    """The first of the places this process may keep a cached file in, made if need be."""
    return next((d for d in places if trusted(d, create=True) and os.access(d, os.W_OK)), None)


def trusted(directory: Path, create: bool = False) -> bool:
    """Under the shared temp dir, only a directory this user made and others cannot write:
    a dictionary or model someone else could replace would decide how every question is read."""
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError:
        return False
    if directory.parent != Path(tempfile.gettempdir()):
        return True
    return info.st_uid == os.getuid() and not info.st_mode & 0o022
