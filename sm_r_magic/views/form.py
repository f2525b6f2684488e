"""`%%r_train --form` (and the other magics): the options as a form; each Launch submits the cell with the
form's values without waiting, adds the run's progress view, and a table compares the runs (hyperparameters,
status, time, metrics)."""

import json

import ipywidgets as widgets

from .. import options, parsing
from ..contract import ENDPOINT_TERMINAL, JOB_TERMINAL
from .base import TextPart, batched, button, locked
from .endpoint import EndpointView
from .html import CSS, badge, esc, fmt_duration
from .job import JobView
from .poller import POLLER


FIELD_LABELS = {"backend": "Backend", "name": "Name", "instance_type": "Instance type", "instance_count": "Instances",
                "model": "Model", "hyperparameters": "Hyperparameters", "channels": "Channels", "inputs": "Inputs"}
FIELD_HINTS = {"model": "the session's latest training job",
               "hyperparameters": "one KEY=VALUE a line, e.g.\nalpha=0.5\nformula=mpg ~ wt",
               "pairs": "one NAME=URI a line, e.g.\ntrain=data/train.csv"}


def _format_pairs(mapping, json_values=False):
    lines = []
    for key, value in (mapping or {}).items():
        if json_values and not isinstance(value, str):
            value = json.dumps(value)
        lines.append(f"{key}={'' if value is None else value}")
    return "\n".join(lines)


def _pair_lines(text):
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]


class LaunchForm(TextPart, widgets.VBox):
    """`%%r_train --form`: the options as a form; each Launch submits the cell with the form's values
    (without waiting) and adds a progress widget and a row in the comparison table."""

    def __init__(self, kind, kwargs, submit):
        self.kind, self.kwargs, self.submit = kind, dict(kwargs or {}), submit
        self.metric_regexes = dict(self.kwargs.get("metrics") or {})
        self.launched = []  # [(overrides, job)]
        self._metrics = {}
        self.options = options.form_fields(kind)
        fields = [self._field(option) for option in self.options]
        self.launch_button = button("Deploy" if kind == "endpoint" else "Launch", icon="play", css="smr-launch",
                                     tooltip="Submit the cell's R code with these values")
        self.message = widgets.HTML()
        self.results = widgets.HTML()
        self.runs = widgets.VBox(layout=widgets.Layout(width="100%"))
        title = {"training": "Launch a training job", "processing": "Launch a processing job",
                 "endpoint": "Deploy an endpoint"}.get(kind, f"Launch a {kind or 'job'}")
        metrics = ""
        if self.metric_regexes:
            metrics = ('<div class="smr-box smr-meta">metrics: '
                       + ", ".join(f"{esc(k)} = <code>{esc(v)}</code>" for k, v in self.metric_regexes.items())
                       + "</div>")
        head = widgets.HTML(f'{CSS}<div class="smr-box"><span class="smr-title">{esc(title)}</span>'
                            f'<span class="smr-meta">each {esc(self.launch_button.description)} submits the cell '
                            'with these values</span></div>'
                            + metrics)
        self.launch_button.on_click(self.launch)
        super().__init__([head] + fields + [widgets.HBox([self.launch_button, self.message],
                                                         layout=widgets.Layout(align_items="center")),
                                            self.results, self.runs],
                         layout=widgets.Layout(width="100%", max_width="1100px"))
        self.add_class("smr-launch-form")
        self._final = True

    def text_summary(self):
        return f"launch form ({self.kind}): {len(self.launched)} launched"

    def __repr__(self):
        return f"<LaunchForm {self.kind}: {len(self.launched)} launched>"

    def _field(self, option):
        """The widget of one option, prefilled from the magic line (else the setting's default); kept as an
        attribute named like its API keyword (self.backend, self.instance_count, ...; inputs/channels: self.data)."""
        from .. import config as config_module

        cfg = config_module.current()
        wide, line = {"description_width": "10em"}, widgets.Layout(width="24em")
        area = widgets.Layout(width="100%", max_width="40em", height="5.5em")
        given = self.kwargs.get(option.kwarg)
        label = FIELD_LABELS.get(option.kwarg, option.kwarg.replace("_", " ").capitalize())
        if option.form == "choice":
            field = widgets.Dropdown(options=option.choices, value=given or cfg.backend, description=label,
                                     style=wide, layout=line)
        elif option.form == "count":
            field = widgets.BoundedIntText(value=given or cfg.instance_count, min=1, max=1000, description=label,
                                           style=wide, layout=widgets.Layout(width="16em"))
        elif option.form == "text":
            default = {"instance_type": cfg.endpoint_instance_type if self.kind == "endpoint" else cfg.instance_type}
            field = widgets.Text(value=str(given) if given is not None else default.get(option.kwarg, ""),
                                 description=label, placeholder=FIELD_HINTS.get(option.kwarg, ""), style=wide,
                                 layout=widgets.Layout(width="40em") if option.kwarg == "model" else line)
        else:  # "pairs", "hyperparameters": one NAME=VALUE a line
            field = widgets.Textarea(value=_format_pairs(given, json_values=option.form == "hyperparameters"),
                                     description=label, placeholder=FIELD_HINTS[option.form], style=wide,
                                     layout=area)
        setattr(self, "data" if option.form == "pairs" else option.kwarg, field)
        return field

    def values(self):
        """The overrides for submit(): raises SmRMagicError (shown in the form) on malformed lines."""
        values = {}
        for option in self.options:
            field = self.data if option.form == "pairs" else getattr(self, option.kwarg)
            if option.form == "pairs":
                values[option.kwarg] = option.parse(_pair_lines(field.value))
            elif option.form == "hyperparameters":
                values[option.kwarg] = parsing.parse_hyperparameters(_pair_lines(field.value))
            elif option.form == "count":
                values[option.kwarg] = int(field.value)
            elif option.kwarg == "model":
                model, given = field.value.strip(), self.kwargs.get("model")
                # an unchanged field keeps the handle the line named (--model VAR)
                values["model"] = given if given is not None and model == str(given) else (model or None)
            elif option.form == "text":
                if field.value.strip() or option.kwarg != "name":
                    values[option.kwarg] = field.value.strip() or None
            else:
                values[option.kwarg] = field.value
        options.check(**values)
        return values

    @locked
    def launch(self, _button=None):
        try:
            overrides = self.values()
        except Exception as exc:
            self.message.value = f'<div class="smr-box"><span class="smr-error">{esc(exc)}</span></div>'
            return None
        self.message.value = '<div class="smr-box smr-note">submitting…</div>'
        try:
            handle = self.submit(**overrides, wait=False, progress="none")
        except Exception as exc:
            self.message.value = (f'<div class="smr-box"><span class="smr-error">launch failed:</span> '
                                  f"{esc(exc)}</div>")
            return None
        if isinstance(handle, dict):  # --dry-run: the request
            self.message.value = '<div class="smr-box smr-note">dry run: the request that would be sent</div>'
            self.runs.children = self.runs.children + (widgets.HTML(
                f'<pre class="smr-pre">{esc(json.dumps(handle, indent=2, default=str))}</pre>'),)
            return handle
        self.launched.append((overrides, handle))
        self.message.value = (f'<div class="smr-box smr-meta">launched {esc(getattr(handle, "name", ""))} '
                              f"(#{len(self.launched)})</div>")
        view = (EndpointView if handle.kind == "endpoint" else JobView).for_handle(handle)
        self.runs.children = self.runs.children + (view,)
        view.follow()
        self._final = False
        self.refresh()
        POLLER.register(self)
        return handle

    def poll(self):
        self.refresh()
        return self._final

    def metrics_of(self, job):
        """Metrics parsed from the job's log (cached once the job has ended)."""
        if job.name in self._metrics:
            return self._metrics[job.name]
        values = job.metrics(self.metric_regexes) if self.metric_regexes else {}
        if job.done:
            self._metrics[job.name] = values
        return values

    def rows(self):
        """[{"job", "status", "elapsed", "hyperparameters", "metrics"}] for each launched variant."""
        rows = []
        for overrides, job in self.launched:
            if not hasattr(job, "kind"):
                continue
            rows.append(dict(job=job.name, status=job.status, elapsed=job.elapsed,
                             backend=overrides.get("backend"),
                             hyperparameters=dict(overrides.get("hyperparameters") or {}),
                             metrics=self.metrics_of(job)))
        return rows

    def refresh(self):
        rows = self.rows()
        with batched(self.results):
            self.results.value = self._table(rows)
        self._final = all(row["status"] in JOB_TERMINAL + ENDPOINT_TERMINAL for row in rows)

    def _table(self, rows):
        if not rows:
            return ""
        hp_keys = sorted({k for row in rows for k in row["hyperparameters"]})
        metric_keys = list(self.metric_regexes)
        head = (["#", "job"] + [esc(k) for k in hp_keys] + ["status", "time"]
                + [f"{esc(m)}" for m in metric_keys])
        out = ['<table class="smr-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
        for index, row in enumerate(rows, 1):
            hps = [f"<td><code>{_hp_text(row['hyperparameters'], k)}</code></td>" for k in hp_keys]
            metrics = []
            for m in metric_keys:
                value = row["metrics"].get(m)
                text = "–" if value is None else (f"{value:.6g}" if isinstance(value, float) else esc(value))
                metrics.append(f'<td class="smr-num">{text}</td>')
            out.append(f"<tr><td>{index}</td><td><code>{esc(row['job'])}</code></td>" + "".join(hps)
                       + f"<td>{badge(row['status'])}</td><td class=\"smr-num\">{fmt_duration(row['elapsed'])}</td>"
                       + "".join(metrics) + "</tr>")
        out.append("</table>")
        return f'<div class="smr-box">{"".join(out)}</div>'


def _hp_text(hps, key):
    if key not in hps:
        return "–"
    value = hps[key]
    return esc(value if isinstance(value, str) else json.dumps(value))
