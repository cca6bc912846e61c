#!/usr/bin/env python3
"""Fetch Debian's Java/Android build tools into android-demo/.tools without touching the system.

A private apt configuration (its own sources list, package lists and cache under .tools/apt)
reads bookworm *and* bullseye: bookworm has aapt, zipalign, apksigner, junit4 and org.json;
dx (``dalvik-exchange``) and android.jar (``libandroid-23-java``, API 23) exist only in bullseye.
Packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
.tools/root; dependencies already installed on the system (libc, the JDK, ...) are skipped.

Usage: ``python3 tools/debtools.py test`` (JUnit + org.json) or ``python3 tools/debtools.py apk``
(everything build-apk.sh needs). ``FEDPA_DEBIAN_MIRROR`` and ``FEDPA_TOOLS_DIR`` override the
mirror and the folder. Prints ``KEY=path`` lines for the calling script to source;
exits 3 with a one-line reason when the packages cannot be fetched (no network, suite gone).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # android-demo/
TOOLS = Path(os.environ.get("FEDPA_TOOLS_DIR", HERE / ".tools")).resolve()  # git-ignored
APT = TOOLS / "apt"
ROOT = TOOLS / "root"
MIRROR = os.environ.get("FEDPA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SOURCES = f"""\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} bullseye main
"""

PACKAGES = {
    "test": ["junit4", "libhamcrest-java", "libandroid-json-org-java"],
    "apk": ["aapt", "zipalign", "apksigner", "dalvik-exchange", "libandroid-23-java",
            "libandroid-json-org-java"],
}
# Java runtimes and what they pull in are the system JDK's business: never fetch or follow them.
SKIP = re.compile(r"^(default-j(re|dk)|openjdk-|java\d*-runtime|java-common|ca-certificates-java)")


class FetchError(Exception):
    """The packages could not be fetched (no network, suite removed, apt missing)."""


def _apt_options() -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={APT / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={APT / 'lists'}",
        "-o", f"Dir::Cache={APT / 'cache'}",
        "-o", f"Dir::Etc::Preferences={APT / 'preferences'}",
        "-o", f"Dir::Etc::PreferencesParts={APT / 'preferences.d'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]


def _run(cmd: list[str], *, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise FetchError(f"{cmd[0]} not found ({exc})") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{' '.join(cmd[:2])} failed: {' | '.join(tail)}")
    return proc.stdout


def _update_lists() -> None:
    for sub in ("lists/partial", "cache/archives/partial", "preferences.d"):
        (APT / sub).mkdir(parents=True, exist_ok=True)
    (APT / "sources.list").write_text(SOURCES)
    if not list((APT / "lists").glob("*bullseye*Packages*")):
        _run(["apt-get", *_apt_options(), "-q", "update"])
    if not list((APT / "lists").glob("*bullseye*Packages*")):
        raise FetchError(f"apt-get update got no bullseye package list from {MIRROR} (offline, or the suite is gone)")


def _installed(packages: list[str]) -> set[str]:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *packages],
                          capture_output=True, text=True, check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if "install ok installed" in line}


def _depends(packages: list[str]) -> list[str]:
    """Hard dependencies of ``packages``, first alternative of each or-group (one apt-cache call)."""
    out = _run(["apt-cache", *_apt_options(), "depends", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    deps: list[str] = []
    in_or = False
    for line in out.splitlines():
        match = re.match(r"^\s+(\|?)(Pre)?Depends: (\S+)", line)
        if not match:
            in_or = False
            continue
        name = match.group(3)
        if not in_or and not name.startswith("<"):
            deps.append(name)
        in_or = match.group(1) == "|"
    return deps


def _resolve(roots: list[str]) -> list[str]:
    """Roots plus every dependency not installed on the system, breadth first."""
    level, seen, wanted = list(roots), set(), []
    while level:
        level = sorted({p for p in level if p not in seen and not SKIP.match(p)})
        seen.update(level)
        installed = _installed(level)
        level = [p for p in level if p in roots or p not in installed]
        wanted.extend(level)
        level = _depends(level) if level else []
    return sorted(wanted)


def fetch(kind: str) -> dict[str, str]:
    """Make sure every package of ``kind`` is unpacked under .tools/root; return tool paths."""
    stamp = TOOLS / f".fetched-{kind}"
    if not stamp.exists():
        _update_lists()
        debs = APT / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for package in _resolve(PACKAGES[kind]):
            if not list(debs.glob(f"{package}_*.deb")):
                _run(["apt-get", *_apt_options(), "-q", "download", package], cwd=debs)
            deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
            _run(["dpkg-deb", "-x", str(deb), str(ROOT)])
        stamp.write_text("ok\n")
    return paths(kind)


def _jar(name: str) -> str:
    for candidate in (ROOT / "usr/share/java" / name, Path("/usr/share/java") / name):
        if candidate.exists():
            return str(candidate)
    raise FetchError(f"{name} not found after unpacking")


def paths(kind: str) -> dict[str, str]:
    out = {"JSON_JAR": _jar("json-android.jar") if (ROOT / "usr/share/java/json-android.jar").exists()
           else _jar("android-json.jar")}
    if kind == "test":
        out["JUNIT_JAR"] = _jar("junit4.jar")
        out["HAMCREST_JAR"] = _jar("hamcrest.jar") if (ROOT / "usr/share/java/hamcrest.jar").exists() \
            else _jar("hamcrest-all.jar")
    else:
        lib = ROOT / "usr/lib/x86_64-linux-gnu/android"
        libs = [lib, ROOT / "usr/lib/x86_64-linux-gnu", ROOT / "usr/lib", ROOT / "usr/lib/p7zip"]
        out["TOOLS_LD_LIBRARY_PATH"] = ":".join(str(p) for p in libs)
        out["AAPT"] = str(ROOT / "usr/lib/android-sdk/build-tools/debian/aapt")
        out["ZIPALIGN"] = str(ROOT / "usr/lib/android-sdk/build-tools/debian/zipalign")
        out["APKSIGNER_JAR"] = _jar("apksigner.jar")
        out["DX_JAR"] = _jar("com.android.dx.jar")
        out["ANDROID_JAR"] = _jar("com.android.android-23.jar")
    return out


def main() -> int:
    kind = sys.argv[1] if len(sys.argv) > 1 else "test"
    if kind not in PACKAGES:
        print(f"usage: {sys.argv[0]} test|apk", file=sys.stderr)
        return 2
    try:
        found = fetch(kind)
    except FetchError as exc:
        print(f"cannot fetch Debian packages for '{kind}': {exc}", file=sys.stderr)
        return 3
    for key, value in found.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
