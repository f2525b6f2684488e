"""The SageMaker Python SDK v2's way to submit the same one-file R training job, timed for bench_submit.py.

Run by the Python of a throwaway venv that has `sagemaker<3` (bench_submit.py makes it under .cache/), with the
AWS environment pointing at bench_submit's moto server. What a seed-style user runs per submission: upload the
channel's data (Session.upload_data) and Estimator(..., entry_point=train.R, source_dir=...).fit(wait=False),
which packages and uploads the code and calls CreateTrainingJob. Prints one JSON object: {"cold": s, "first": [s,
...], "first_calls": [operation, ...], ...}, the cold one being the process's first submission (clients, STS,
default bucket), with the AWS operations each made.

    python sdk_v2_submit.py REPEATS IMAGE ROLE
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

CODE = 'df <- read.csv(file.path(Sys.getenv("SM_CHANNEL_TRAIN"), "data.csv"))\nsaveRDS(lm(y ~ x, df), "m.rds")\n'


def main():
    repeats, image, role = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import logging

    logging.disable(logging.WARNING)
    import boto3
    import sagemaker
    import sagemaker.session
    from sagemaker.estimator import Estimator

    import sagemaker.telemetry.telemetry_logging as telemetry

    # The SDK names STS's regional endpoint explicitly (AWS_ENDPOINT_URL does not reach it): point it at moto.
    sagemaker.session.sts_regional_endpoint = lambda region: os.environ["AWS_ENDPOINT_URL"]
    # No telemetry: each fit() would also send a request to an AWS S3 endpoint, unreachable here. (Opting out
    # through an SDK config file instead makes the SDK validate that file against its JSON schema ~40 times per
    # fit, seconds of time no default user pays.) Leaving it out only makes the SDK look faster.
    telemetry._send_telemetry_request = lambda *args, **kwargs: None

    boto_session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
    calls = []  # AWS operations of each submission (clients copy the session's handlers when created)
    boto_session.events.register("before-call", lambda model, **kwargs: calls.append(model.name))
    from bench_submit import add_round_trip  # (this script's folder is on sys.path; standard library only)

    # before the clients exist: each copies the session's handlers when made
    add_round_trip(boto_session.events, float(os.environ.get("BENCH_ROUND_TRIP_S") or 0))
    session = sagemaker.Session(boto_session=boto_session)
    tmp = tempfile.mkdtemp(prefix="sdk-v2-")

    def submit(tag):
        src = os.path.join(tmp, tag)
        os.makedirs(src)
        with open(os.path.join(src, "train.R"), "w") as fh:
            fh.write(CODE + f"# {tag}\n")
        data = os.path.join(tmp, f"data-{tag}", "data.csv")
        os.makedirs(os.path.dirname(data))
        with open(data, "w") as fh:
            fh.write("x,y\n" + "".join(f"{j},{2 * j}\n" for j in range(1000)) + f"0,{tag!r}\n")
        calls.clear()
        start = time.perf_counter()
        train = session.upload_data(data, key_prefix=f"bench/{tag}")
        estimator = Estimator(image_uri=image, role=role, instance_count=1, instance_type="ml.m5.large",
                              entry_point="train.R", source_dir=src, sagemaker_session=session,
                              hyperparameters={"alpha": 0.5}, base_job_name="bench-sdk")
        estimator.fit({"train": train}, wait=False, logs=False)
        return time.perf_counter() - start, list(calls)

    cold, cold_calls = submit("cold")
    runs = [submit(f"run-{i}") for i in range(repeats)]
    print(json.dumps({"sagemaker_version": sagemaker.__version__, "cold": cold, "cold_calls": cold_calls,
                      "first": [t for t, _ in runs], "first_calls": runs[-1][1]}))


if __name__ == "__main__":
    main()
