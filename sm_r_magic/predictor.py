"""Endpoint handles: predict() with pandas/dict/str payloads, status, logs, delete. One class for every
backend; the backend does create/describe/invoke/delete (local: an R process on 127.0.0.1)."""

import csv
import io
import json
import math
import time

from .contract import ENDPOINT_TERMINAL
from .handle import Handle, Snapshot
R_MISSING = "NA"  # how R's write.csv writes a missing value and read.csv reads one


class InvocationError(Exception):
    """The endpoint answered with an error status; `body` holds its message (the R error)."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body.strip()[:2000]}")


def serialize(data, content_type):
    """Python data -> request body for text/csv or application/json."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    is_frame = type(data).__name__ == "DataFrame" and hasattr(data, "to_csv")
    if content_type == "application/json":
        if is_frame:
            data = data.to_dict(orient="list")
        return json.dumps(_json_ready(data)).encode("utf-8")
    if content_type == "text/csv":
        if is_frame:
            return data.to_csv(index=False, na_rep=R_MISSING).encode("utf-8")
        if isinstance(data, (list, tuple)):  # rows without a header row, as SageMaker's CSV serializer sends
            rows = data if data and all(isinstance(row, (list, tuple)) for row in data) else [data]
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([R_MISSING if _is_missing(v) else v for v in row]
                                                           for row in rows)
            return out.getvalue().encode("utf-8")
        if isinstance(data, dict):  # columns -> a CSV with a header, as the default input_fn reads it
            names = list(data)
            columns = [v if isinstance(v, (list, tuple)) else [v] for v in data.values()]
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(names)
            writer.writerows([R_MISSING if _is_missing(v) else v for v in row] for row in zip(*columns))
            return out.getvalue().encode("utf-8")
        raise TypeError("text/csv needs a pandas DataFrame, a dict of columns, a list of rows, str or bytes")
    raise TypeError(f"cannot serialize {type(data).__name__} as {content_type}: pass str or bytes")


def _is_missing(value):
    """None, NaN, pandas NA or NaT."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and math.isnan(value)


def _json_ready(value):
    """value with numpy arrays/scalars as plain values and missing values as None (JSON null, NA in R)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return None if _is_missing(value) else value


def _number(text):
    if text == R_MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def deserialize(body, content_type):
    """Response body -> Python: JSON parsed (a data.frame comes as a list of records); CSV as a list of numbers
    (one column) or of rows (lists of values): the serving container's CSV answers have no header row, as
    SageMaker's. Only a response typed `text/csv; header=present` (RFC 4180) has one: then a list of records
    (dicts). A missing value (JSON null, CSV NA) is None."""
    media_type, _, parameters = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    text = body.decode("utf-8", errors="replace")
    if media_type == "application/json":
        return json.loads(text)
    if media_type == "text/csv":
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        if _has_header(parameters) and rows:
            return [dict(zip(rows[0], (_number(v) for v in row))) for row in rows[1:]]
        if rows and all(len(row) == 1 for row in rows):
            return [_number(row[0]) for row in rows]
        return [[_number(v) for v in row] for row in rows]
    return body


def _has_header(parameters):
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "header":
            return value.strip().strip('"').lower() == "present"
    return False


def default_content_type(data):
    if isinstance(data, (dict, list)):
        return "application/json"
    return "text/csv"


class Predictor(Handle):
    """A deployed endpoint."""

    kind = "endpoint"
    terminal_statuses = ENDPOINT_TERMINAL

    def __init__(self, backend, endpoint_name, keep=False):
        super().__init__(backend, endpoint_name)
        self.keep = keep

    @property
    def endpoint_name(self):
        return self.name

    def _fetch_description(self):
        return self.backend.describe_endpoint(self.name)

    def _read_logs(self, cursor):
        return self.backend.read_endpoint_logs(self.name, cursor)

    def _status_of(self, description):
        return description["EndpointStatus"]

    def describe(self, refresh=True):
        # An endpoint can change after InService (deleted, failed): always ask when told to; one this handle
        # deleted is gone for good (SageMaker and docker forget it: asking again would be "no such endpoint").
        deleted = self._description is not None and self._description.get("EndpointStatus") == "Deleted"
        if (refresh and not deleted) or self._description is None:
            self._description = self._fetch_description()
            self._described_at = time.monotonic()
        return self._description

    @property
    def secondary_status(self):
        return self.status

    @property
    def url(self):
        desc = self._cached()
        return desc.get("LocalUrl") or desc.get("EndpointArn")

    @property
    def transitions(self):
        return []

    def refresh_interval(self, waited):
        low, high = getattr(self.backend, "poll_interval", (0.5, 5.0))
        # backs off more slowly than jobs': a local endpoint is InService ~0.5 s after its start
        return min(high, low * (1.25 ** max(0, waited)))

    def snapshot(self, fetch=True):
        desc = self._description_for(fetch)
        status = desc["EndpointStatus"]
        # an endpoint "settles" once creation has ended; its age keeps growing while it serves
        return Snapshot(kind="endpoint", name=self.name, backend=self.backend_name, status=status,
                        secondary_status=status, terminal=status in ("Failed", "Deleted"),
                        created=desc.get("CreationTime"), failure_reason=desc.get("FailureReason"),
                        local_folder=desc.get("LocalEndpointFolder"),
                        url=desc.get("LocalUrl") or desc.get("EndpointArn"), log_lines=self.log_lines)

    def invoke(self, body, content_type="text/csv", accept=None):
        """Send raw bytes to /invocations; returns (bytes, content type)."""
        return self.backend.invoke_endpoint(self.endpoint_name, body, content_type, accept or content_type)

    def example_payload(self, content_type="text/csv"):
        """A request body holding one row of the model's own inputs (CSV with a header row, or JSON records), as
        local and docker endpoints serve it (GET /prototype); None when it is not known (a model without known
        inputs, an endpoint not InService, or a SageMaker endpoint: SageMaker routes only /invocations)."""
        return self.backend.endpoint_example(self.endpoint_name, content_type)

    def predict(self, data, content_type=None, accept=None):
        """Serialize `data` (DataFrame -> CSV by default, dict/list -> JSON; a list of rows can go as CSV without a
        header row), invoke, parse the answer (see deserialize)."""
        content_type = content_type or default_content_type(data)
        body, response_type = self.invoke(serialize(data, content_type), content_type, accept)
        return deserialize(body, response_type or accept or content_type)

    def delete(self):
        """Delete the endpoint (and its endpoint config and model): the process/instances stop."""
        self.backend.delete_endpoint(self.endpoint_name)
        self._description = dict(self._description or {"EndpointName": self.name}, EndpointStatus="Deleted")
        self._described_at = time.monotonic()
        from .jobs import SESSION

        SESSION.remove_endpoint(self)

    def summary(self):
        status = self.status
        text = f"endpoint {self.endpoint_name} ({self.backend_name}): {status}"
        if status == "InService" and self.url:
            text += f" · {self.url}"
        return text
