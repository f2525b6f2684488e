"""`sm-r-magic install-kernel`: kernels that have the magics without `%load_ext sm_r_magic`.

Two ways, both idempotent:
  * a Jupyter kernel spec for this Python whose argv loads the extension at start
    (`python -m ipykernel_launcher -f {connection_file} --ext sm_r_magic`): pick it in Jupyter's kernel list;
  * `--ipython-config`: the line `c.InteractiveShellApp.extensions.append("sm_r_magic")` in an IPython
    profile's ipython_config.py, so every kernel and terminal IPython of that profile loads it.
"""

import json
import os
import re
import shutil
import sys
import tempfile

from .errors import SmRMagicError

DEFAULT_NAME = "sm-r-magic"
DEFAULT_DISPLAY_NAME = "Python 3 (sm-r-magic loaded)"
EXTENSION = "sm_r_magic"
CONFIG_LINE = f'c.InteractiveShellApp.extensions.append("{EXTENSION}")'
_CONFIG_COMMENT = "# Added by `sm-r-magic install-kernel --ipython-config`: the %%r_* magics in every session."
# An existing line that already loads the extension (ours, or one the user wrote by hand).
_LOADED = re.compile(r"^\s*c\.(InteractiveShellApp|IPKernelApp|TerminalIPythonApp)\.extensions\b.*"
                     r"""['"]sm_r_magic['"]""", re.MULTILINE)
_KERNEL_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


def kernel_argv(python=None):
    """The kernel's command line: ipykernel with the extension loaded before the first cell."""
    return [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext", EXTENSION]


def kernel_json(display_name=DEFAULT_DISPLAY_NAME, env=None, python=None):
    spec = {"argv": kernel_argv(python), "display_name": display_name, "language": "python",
            "metadata": {"debugger": True}}
    if env:
        spec["env"] = dict(env)
    return spec


def install_kernel_spec(name=DEFAULT_NAME, display_name=None, user=False, prefix=None, env=None):
    """Install the kernel spec (kernel.json + ipykernel's logos) and return the folder it went to."""
    if not _KERNEL_NAME.match(name or ""):
        raise SmRMagicError(f"--name {name!r}: a kernel name uses letters, digits, '.', '_' and '-' only")
    try:
        import ipykernel  # noqa: F401  (the kernel runs it)
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        raise SmRMagicError(f"install-kernel needs ipykernel in {sys.executable}: pip install ipykernel") from None
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, name)
        os.makedirs(folder)
        try:  # the Python logos, as `python -m ipykernel install` ships them
            from ipykernel.kernelspec import RESOURCES

            for logo in os.listdir(RESOURCES):
                if logo.startswith("logo-"):
                    shutil.copy(os.path.join(RESOURCES, logo), folder)
        except (ImportError, OSError):
            pass
        with open(os.path.join(folder, "kernel.json"), "w") as fh:
            json.dump(kernel_json(display_name or DEFAULT_DISPLAY_NAME, env), fh, indent=1)
            fh.write("\n")
        try:
            # an existing spec of that name is replaced
            return KernelSpecManager().install_kernel_spec(folder, kernel_name=name, user=user, prefix=prefix)
        except PermissionError as exc:
            raise SmRMagicError(f"cannot write the kernel spec ({exc.filename}): use --user, --sys-prefix "
                                "or --prefix DIR") from None


def ipython_config_path(profile="default", ipython_dir=None):
    """The profile's ipython_config.py (the profile folder is created when missing)."""
    from IPython.core.profiledir import ProfileDir, ProfileDirError
    from IPython.paths import get_ipython_dir

    ipython_dir = os.path.abspath(os.path.expanduser(ipython_dir or get_ipython_dir()))
    os.makedirs(ipython_dir, exist_ok=True)
    try:
        profile_dir = ProfileDir.find_profile_dir_by_name(ipython_dir, profile)
    except ProfileDirError:
        profile_dir = ProfileDir.create_profile_dir_by_name(ipython_dir, profile)
    return os.path.join(profile_dir.location, "ipython_config.py")


def add_to_ipython_config(profile="default", ipython_dir=None):
    """Append the extension line to ipython_config.py unless it is there. Returns (path, changed)."""
    path = ipython_config_path(profile, ipython_dir)
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    if _LOADED.search(text):
        return path, False
    addition = ""
    if not text:
        addition = "c = get_config()  # noqa\n"
    elif not text.endswith("\n"):
        addition = "\n"
    addition += f"\n{_CONFIG_COMMENT}\n{CONFIG_LINE}\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(addition)
    return path, True


def _parse_env(items):
    env = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise SmRMagicError(f"malformed --env {item!r}: expected --env KEY=VALUE")
        env[key] = value
    return env


def run(args):
    if args.ipython_config:
        path, changed = add_to_ipython_config(args.profile, args.ipython_dir)
        if changed:
            print(f"Added {CONFIG_LINE} to {path}")
        else:
            print(f"{path} already loads {EXTENSION}: unchanged")
        print("IPython sessions and kernels of this profile now have %%r_processing, %%r_train and %%r_deploy.")
        return 0
    prefix = sys.prefix if args.sys_prefix else args.prefix
    where = install_kernel_spec(args.name, args.display_name, user=args.user, prefix=prefix,
                                env=_parse_env(args.env))
    print(f"Installed kernel spec {args.name!r} in {where}")
    print(f"Pick \"{args.display_name or DEFAULT_DISPLAY_NAME}\" as the kernel: %%r_train works without %load_ext.")
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "install-kernel", help="install a Jupyter kernel that loads the magics at start",
        description="Install a Jupyter kernel spec for this Python that loads sm_r_magic at start (no %%load_ext "
                    "needed), or with --ipython-config add the extension to an IPython profile instead.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help="install into this Python's prefix (venv/conda)")
    where.add_argument("--prefix", metavar="DIR", help="install into DIR/share/jupyter/kernels")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"kernel name (default {DEFAULT_NAME})")
    parser.add_argument("--display-name", help=f"name shown in Jupyter (default {DEFAULT_DISPLAY_NAME!r})")
    parser.add_argument("--env", action="append", metavar="KEY=VALUE",
                        help="environment variable of the kernel, e.g. SM_R_MAGIC_BACKEND=sagemaker (repeatable)")
    parser.add_argument("--ipython-config", action="store_true",
                        help="instead of a kernel spec, append the extension to the profile's ipython_config.py "
                             "(idempotent)")
    parser.add_argument("--profile", default="default", help="IPython profile for --ipython-config")
    parser.add_argument("--ipython-dir", help="IPython folder for --ipython-config (default $IPYTHONDIR or ~/.ipython)")
    parser.set_defaults(func=run)
    return parser
