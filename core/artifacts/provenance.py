"""Provenance of a result: code version, library versions, machine."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from core.artifacts.layout import REPO_ROOT

LIBRARIES = ("tensorflow-cpu", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
             "numpy", "scikit-learn", "pillow", "imagehash", "streamlit", "pandas", "altair")


def code_version() -> dict:
    """Git commit of the code and whether the working tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "core")
    return {"git_commit": commit, "core_modified": bool(status) if status is not None else None}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> dict:
    """CPU model, core count, memory and OS of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "hostname_hash": _short_hash(platform.node()),
    }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def collect() -> dict:
    """Code version, libraries and machine in one dict."""
    return {"code": code_version(), "libraries": library_versions(), "machine": machine()}
