"""`sm-r-magic jobs`: list jobs; `sm-r-magic jobs logs NAME`; `sm-r-magic jobs stop NAME`."""

import sys


def register(subparsers):
    parser = subparsers.add_parser("jobs", help="List, show logs of, or stop jobs.")
    parser.add_argument("action", nargs="?", choices=("list", "logs", "stop"), default="list")
    parser.add_argument("name", nargs="?", help="Job name (for logs and stop).")
    parser.add_argument("--backend", help="local, docker or sagemaker (default: the configured one).")
    parser.set_defaults(func=run)


def run(args):
    from . import api
    from .errors import SmRMagicError
    from .views import show_jobs

    if args.action == "list":
        show_jobs(api.jobs(backend=args.backend))
        return 0
    if not args.name:
        raise SmRMagicError(f"sm-r-magic jobs {args.action} needs a job name")
    job = api.attach(args.name, backend=args.backend)
    if args.action == "logs":
        sys.stdout.write(job.logs())
    else:
        job.stop()
        print(job.summary())
    return 0
