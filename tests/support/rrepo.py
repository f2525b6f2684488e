"""A small local R package repository for tests (CRAN is not reachable here).

    repo = build_repo(tmp_dir)   # -> RRepo(path, url="file:///.../repo", packages={...})

Two tiny pure-R packages, built with `R CMD build` and indexed with `tools::write_PACKAGES`:
    smrtoya  0.1.0   smrtoya_hello() -> "hello from smrtoya 0.1.0"
    smrtoyb  0.2.0   Imports smrtoya; smrtoyb_twice(x) -> 2 * x, smrtoyb_hello() calls smrtoya
Installing smrtoyb from the repository therefore also installs smrtoya (a dependency resolved by R).
"""

import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field

PACKAGES = {
    "smrtoya": {
        "version": "0.1.0",
        "imports": [],
        "code": 'smrtoya_hello <- function() "hello from smrtoya 0.1.0"\n',
        "exports": ["smrtoya_hello"],
    },
    "smrtoyb": {
        "version": "0.2.0",
        "imports": ["smrtoya"],
        "code": ("smrtoyb_twice <- function(x) 2 * x\n"
                 'smrtoyb_hello <- function() paste("smrtoyb says:", smrtoya::smrtoya_hello())\n'),
        "exports": ["smrtoyb_twice", "smrtoyb_hello"],
    },
}


@dataclass
class RRepo:
    path: str
    packages: dict = field(default_factory=dict)

    @property
    def url(self):
        return "file://" + self.path


def _write_package(src_root, name, meta):
    pkg = os.path.join(src_root, name)
    os.makedirs(os.path.join(pkg, "R"), exist_ok=True)
    description = textwrap.dedent(f"""\
        Package: {name}
        Type: Package
        Title: A Tiny Test Package For sm-r-magic
        Version: {meta['version']}
        Authors@R: person("Test", "Author", email = "test@example.com", role = c("aut", "cre"))
        Description: A tiny package used by the sm-r-magic tests to check per-job installs.
        License: MIT + file LICENSE
        Encoding: UTF-8
        """)
    if meta["imports"]:
        description += "Imports: " + ", ".join(meta["imports"]) + "\n"
    with open(os.path.join(pkg, "DESCRIPTION"), "w") as fh:
        fh.write(description)
    with open(os.path.join(pkg, "LICENSE"), "w") as fh:
        fh.write("YEAR: 2026\nCOPYRIGHT HOLDER: sm-r-magic tests\n")
    with open(os.path.join(pkg, "NAMESPACE"), "w") as fh:
        fh.write("".join(f"export({e})\n" for e in meta["exports"]))
    with open(os.path.join(pkg, "R", f"{name}.R"), "w") as fh:
        fh.write(meta["code"])
    return pkg


def build_repo(root, rscript="Rscript", packages=None):
    """Build the packages into <root>/repo/src/contrib and index them; returns an RRepo."""
    packages = packages or PACKAGES
    root = os.path.abspath(root)
    src_root = os.path.join(root, "src")
    contrib = os.path.join(root, "repo", "src", "contrib")
    os.makedirs(src_root, exist_ok=True)
    os.makedirs(contrib, exist_ok=True)
    r_bin = os.path.join(os.path.dirname(shutil.which(rscript) or "/usr/bin/Rscript"), "R")
    env = dict(os.environ, R_LIBS_USER=os.path.join(root, "nolib"))  # never see a user's installed copies
    for name, meta in packages.items():
        pkg = _write_package(src_root, name, meta)
        subprocess.run([r_bin, "CMD", "build", "--no-build-vignettes", "--no-manual", pkg], cwd=contrib, env=env,
                       check=True, capture_output=True)
    subprocess.run([rscript, "--no-init-file", "-e", f'tools::write_PACKAGES("{contrib}", type = "source")'],
                   check=True, capture_output=True, env=env)
    # Readable by a container that runs as another user.
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "repo")):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return RRepo(path=os.path.join(root, "repo"), packages={k: v["version"] for k, v in packages.items()})
