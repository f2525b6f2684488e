"""HTML pieces every widget view shares: the stylesheet, status badges, durations, the step timeline, key/value
tables and log panes. Plain strings: no ipywidgets here."""

import html

from ..contract import JOB_TERMINAL

STATUS_COLORS = {
    "InProgress": "var(--jp-brand-color1, #1976d2)",
    "Creating": "var(--jp-brand-color1, #1976d2)",
    "Updating": "var(--jp-brand-color1, #1976d2)",
    "SystemUpdating": "var(--jp-brand-color1, #1976d2)",
    "Starting": "var(--jp-brand-color1, #1976d2)",     # pipeline executions and their steps
    "Executing": "var(--jp-brand-color1, #1976d2)",
    "Completed": "var(--jp-success-color1, #388e3c)",
    "Succeeded": "var(--jp-success-color1, #388e3c)",
    "InService": "var(--jp-success-color1, #388e3c)",
    "Failed": "var(--jp-error-color1, #d32f2f)",
    "Stopped": "var(--jp-warn-color1, #f57c00)",
    "Stopping": "var(--jp-warn-color1, #f57c00)",
    "OutOfService": "var(--jp-warn-color1, #f57c00)",
    "Deleting": "#757575",
    "Deleted": "#757575",
}
ENDPOINT_FINAL = ("InService", "Failed", "Deleted")

CSS = """<style>
.smr-box { color: var(--jp-ui-font-color1, inherit); line-height: 1.45; }
.smr-title { font-size: var(--jp-ui-font-size2, 1.1em); font-weight: 600; margin-right: 0.6em; }
.smr-meta { color: var(--jp-ui-font-color2, #616161); }
.smr-badge { display: inline-block; padding: 0 0.7em; border-radius: 1em; color: #fff; font-weight: 600;
  line-height: 1.6; font-size: var(--jp-ui-font-size1, 13px); white-space: nowrap; }
.smr-timeline { color: var(--jp-ui-font-color2, #616161); line-height: 1.5; }
.smr-timeline b { color: var(--jp-ui-font-color1, inherit); }
.smr-step { white-space: nowrap; }
.smr-pre { font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 12px);
  color: var(--jp-content-font-color1, inherit); background: var(--jp-layout-color2, rgba(127,127,127,.1));
  border: 1px solid var(--jp-border-color2, rgba(127,127,127,.3)); border-radius: 2px; padding: 4px 8px;
  margin: 2px 0; white-space: pre-wrap; word-break: break-word; line-height: 1.35; }
.smr-scroll { max-height: 18em; overflow: auto; display: flex; flex-direction: column-reverse; }
.smr-section { font-weight: 600; margin-top: 4px; }
.smr-kv { border-collapse: collapse; line-height: 1.5; }
.smr-kv th { text-align: left; font-weight: 600; padding: 0 1em 0 0; vertical-align: top;
  color: var(--jp-ui-font-color2, #616161); white-space: nowrap; }
.smr-kv td { padding: 0; word-break: break-all; }
.smr-kv code, .smr-table code { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 12px); color: var(--jp-content-font-color1, inherit);
  background: transparent; }
.smr-table { border-collapse: collapse; line-height: 1.5; margin: 4px 0; }
.smr-table th, .smr-table td { text-align: left; padding: 2px 10px 2px 0;
  border-bottom: 1px solid var(--jp-border-color2, rgba(127,127,127,.3)); vertical-align: top; }
.smr-table th { font-weight: 600; color: var(--jp-ui-font-color2, #616161); }
.smr-num { text-align: right !important; font-variant-numeric: tabular-nums; }
.smr-metrics b { font-variant-numeric: tabular-nums; }
.smr-note { color: var(--jp-ui-font-color2, #616161); font-style: italic; }
.smr-error { color: var(--jp-error-color1, #d32f2f); font-weight: 600; }
</style>"""


# -- small helpers ----------------------------------------------------------------------------------------
def esc(text):
    return html.escape("" if text is None else str(text), quote=True)


def fmt_duration(seconds):
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def badge(status):
    color = STATUS_COLORS.get(status, "#757575")
    return (f'<span class="smr-badge" data-status="{esc(status)}" style="background: {color}">'
            f"{esc(status)}</span>")


def status_html(status):
    return f'<div class="smr-box">{badge(status)}</div>'


def timeline_html(transitions, now):
    """Starting 0.2s › Downloading 0.0s › Training 12s … (the current step bold, still ticking)."""
    steps = []
    shown = [t for t in transitions if t.get("Status") not in JOB_TERMINAL]
    for index, step in enumerate(shown):
        start, end = step.get("StartTime"), step.get("EndTime")
        current = end is None and index == len(shown) - 1
        seconds = ((end or now) - start).total_seconds() if start else None
        text = f"{esc(step.get('Status'))} {fmt_duration(seconds)}"
        title = esc(step.get("StatusMessage") or "")
        steps.append(f'<span class="smr-step" title="{title}">' + (f"<b>{text} …</b>" if current else text)
                     + "</span>")
    if not steps:
        return ""
    return '<div class="smr-box smr-timeline">' + " › ".join(steps) + "</div>"


def kv_table(rows):
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="smr-kv">{body}</table>'


def log_html(lines, limit, note=""):
    if not lines:
        return '<div class="smr-box smr-note">no log lines yet</div>'
    shown = lines[-limit:] if limit else lines
    head = ""
    if len(shown) < len(lines):
        head = f'<div class="smr-box smr-note">last {len(shown)} of {len(lines)} lines{note}</div>'
    text = esc("\n".join(shown))
    return f'{head}<div class="smr-scroll"><pre class="smr-pre">{text}</pre></div>'
