"""A pipeline execution's step graph as plain data and as SVG (no ipywidgets here): which state each step is in
(from the snapshot's steps and the definition), where its box goes (layers left to right from the edges), and
the arrows between boxes (a condition's "if"/"else" branches marked taken or not)."""

from dataclasses import dataclass

from ..workflow import graph
from .html import STATUS_COLORS, esc, fmt_duration

BOX_W, BOX_H = 164, 66      # a step's box
GAP_X, GAP_Y = 64, 22       # between layers, between boxes of one layer
PAD = 6
GREY = "var(--jp-ui-font-color3, #9e9e9e)"
RUNNING = ("Starting", "Executing", "Stopping")
TYPE_LABEL = {"Processing": "processing", "Training": "training", "Condition": "condition",
              "RegisterModel": "register model", "Fail": "fail"}
NAME_CHARS = 20


@dataclass(frozen=True)
class StepState:
    name: str
    type: str                 # the definition's step Type
    status: str               # a StepStatus, "Pending" (not started yet) or "NotRun" (it never will)
    seconds: float = None     # how long it ran (so far)
    cached: bool = False      # reused an earlier execution's job (CacheHitResult)
    outcome: str = None       # a Condition step's "True"/"False"
    has_job: bool = False     # a job ran for it (Metadata TrainingJob/ProcessingJob)
    reason: str = None        # FailureReason


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    label: str                # "" for data, "if"/"else" for a condition's branches
    taken: bool = None        # a branch: True/False once the condition decided, None before


class StepGraph:
    """The definition's steps (every one, also those that have not started) and the edges to draw: a data
    edge that a longer path already implies is left out, so the picture shows the order without a tangle."""

    def __init__(self, definition, edges):
        found = graph.all_steps(definition)
        self.order = list(found)
        self.types = {name: step.get("Type", "") for name, (step, _, _) in found.items()}
        self.branch_of = {name: (parent, branch) for name, (_, parent, branch) in found.items() if parent}
        self.edges = tuple(e for e in edges if e[2] or not _implied(e, edges))
        self.layers = _layers(self.order, edges)
        self.positions = _positions(self.order, self.layers)

    def states(self, steps, terminal, now):
        started = {s["StepName"]: s for s in steps}
        outcomes = {name: ((s.get("Metadata") or {}).get("Condition") or {}).get("Outcome")
                    for name, s in started.items()}
        return {name: self._state(name, started.get(name), outcomes, terminal, now) for name in self.order}

    def _state(self, name, step, outcomes, terminal, now):
        if step is None:
            return StepState(name, self.types[name], "NotRun" if terminal or self._skipped(name, outcomes)
                             else "Pending")
        metadata = step.get("Metadata") or {}
        start, end = step.get("StartTime"), step.get("EndTime")
        seconds = ((end or now) - start).total_seconds() if start else None
        return StepState(name, self.types[name], step.get("StepStatus", "Pending"), seconds,
                         cached=bool(step.get("CacheHitResult")),
                         outcome=(metadata.get("Condition") or {}).get("Outcome"),
                         has_job=bool(metadata.get("TrainingJob") or metadata.get("ProcessingJob")),
                         reason=step.get("FailureReason"))

    def _skipped(self, name, outcomes):
        """In the branch a condition did not take (or inside a step that was skipped)."""
        if name not in self.branch_of:
            return False
        parent, branch = self.branch_of[name]
        outcome = outcomes.get(parent)
        if outcome is not None and (outcome == "True") != (branch == "IfSteps"):
            return True
        return self._skipped(parent, outcomes)

    def arrows(self, states):
        made = []
        for source, target, label in self.edges:
            taken = None
            if label and states[source].outcome is not None:
                taken = (states[source].outcome == "True") == (label == "if")
            made.append(Arrow(source, target, label, taken))
        return made

    def size(self):
        width = PAD * 2 + (max(self.layers.values(), default=0) + 1) * (BOX_W + GAP_X) - GAP_X
        height = PAD * 2 + max((y for _, y in self.positions.values()), default=0) + BOX_H - PAD
        return width, height


def _implied(edge, edges):
    """Is there another path from the edge's source to its target?"""
    source, target, _ = edge
    after = {}
    for a, b, _label in edges:
        if (a, b) != (source, target):
            after.setdefault(a, set()).add(b)
    seen, todo = set(), [source]
    while todo:
        for nxt in after.get(todo.pop(), ()):
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _layers(order, edges):
    """Each step's column: one more than the furthest step it needs (steps with no inputs in column 0)."""
    needs = {name: set() for name in order}
    for source, target, _ in edges:
        if target in needs and source in needs:
            needs[target].add(source)
    layers = {}

    def layer(name, path=()):
        if name not in layers:
            layers[name] = 0 if name in path else 1 + max((layer(n, path + (name,)) for n in needs[name]),
                                                        default=-1)
        return layers[name]

    for name in order:
        layer(name)
    return layers


def _positions(order, layers):
    columns = {}
    for name in order:
        columns.setdefault(layers[name], []).append(name)
    tallest = max((len(c) for c in columns.values()), default=1)
    positions = {}
    for column, names in columns.items():
        offset = (tallest - len(names)) * (BOX_H + GAP_Y) / 2
        for index, name in enumerate(names):
            positions[name] = (PAD + column * (BOX_W + GAP_X), PAD + offset + index * (BOX_H + GAP_Y))
    return positions


# -- drawing -------------------------------------------------------------------------------------------------
def step_color(status):
    return STATUS_COLORS.get(status, GREY)


def status_line(state, cached_mark=True):
    if state.status == "Pending":
        return "pending"
    if state.status == "NotRun":
        return "not run"
    if state.type == "Condition" and state.outcome is not None:
        return f"{state.outcome} → {'if' if state.outcome == 'True' else 'else'}"
    text = state.status
    if state.cached:
        return f"{text} · cached" if cached_mark else text  # (the box shows a "cached" tag instead)
    if state.seconds is not None:
        text += f" · {fmt_duration(state.seconds)}" + (" …" if state.status in RUNNING else "")
    return text


def _short(name):
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _text(x, y, text, style):
    return f'<text x="{x:.0f}" y="{y:.0f}" style="{style}">{esc(text)}</text>'


def _box(state, x, y):
    color = step_color(state.status)
    greyed = state.status in ("Pending", "NotRun")
    font = "font-family: var(--jp-ui-font-family, sans-serif);"
    parts = [f'<g class="smr-node" data-step="{esc(state.name)}" data-status="{esc(state.status)}" '
             f'data-cached="{str(state.cached).lower()}"' + (' style="opacity: 0.45"' if state.status == "NotRun"
                                                             else "") + ">",
             f"<title>{esc(state.name)} · {esc(TYPE_LABEL.get(state.type, state.type))} · "
             f"{esc(status_line(state))}</title>",
             f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" style="fill: '
             f'var(--jp-layout-color1, #fff); stroke: {color}; stroke-width: 2'
             + ('; stroke-dasharray: 5 3"' if greyed else '"') + "/>",
             f'<rect x="{x:.0f}" y="{y:.0f}" width="7" height="{BOX_H}" rx="3" style="fill: {color}"/>',
             _text(x + 16, y + 21, _short(state.name),
                   f"{font} font-weight: 600; font-size: 13px; fill: var(--jp-ui-font-color1, #212121)"),
             _text(x + 16, y + 38, TYPE_LABEL.get(state.type, state.type),
                   f"{font} font-size: 11px; fill: var(--jp-ui-font-color2, #616161)"),
             _text(x + 16, y + 56, status_line(state, cached_mark=False),
                   f"{font} font-size: 12px; font-weight: 600; fill: {color}")]
    if state.cached:
        parts.append(f'<g class="smr-cached"><rect x="{x + BOX_W - 54:.0f}" y="{y + 6:.0f}" width="46" height="16" '
                     f'rx="8" style="fill: {color}"/>' + _text(x + BOX_W - 45, y + 18, "cached",
                                                              f"{font} font-size: 10px; fill: #fff") + "</g>")
    parts.append("</g>")
    return "".join(parts)


def _arrow(arrow, positions, states):
    (sx, sy), (tx, ty) = positions[arrow.source], positions[arrow.target]
    x1, y1, x2, y2 = sx + BOX_W, sy + BOX_H / 2, tx - 1, ty + BOX_H / 2
    greyed = arrow.taken is False or states[arrow.target].status == "NotRun"
    color = GREY if greyed else "var(--jp-ui-font-color2, #616161)"
    bend = max(20.0, (x2 - x1) / 2)
    dash = "; stroke-dasharray: 5 3" if greyed else ""
    parts = [f'<g class="smr-arrow" data-from="{esc(arrow.source)}" data-to="{esc(arrow.target)}" '
             f'data-label="{esc(arrow.label)}" data-taken="{"" if arrow.taken is None else str(arrow.taken).lower()}">',
             f'<path d="M {x1:.0f} {y1:.0f} C {x1 + bend:.0f} {y1:.0f}, {x2 - 8 - bend:.0f} {y2:.0f}, {x2 - 8:.0f} '
             f'{y2:.0f}" style="fill: none; stroke: {color}; stroke-width: 1.5{dash}"/>',
             f'<polygon points="{x2 - 9:.0f},{y2 - 5:.0f} {x2:.0f},{y2:.0f} {x2 - 9:.0f},{y2 + 5:.0f}" '
             f'style="fill: {color}"/>']
    if arrow.label:
        mark = {True: " ✓", False: " ✗", None: ""}[arrow.taken]
        text = arrow.label + mark
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        width = 9 + 7 * len(text)
        parts.append(f'<rect x="{mx - width / 2:.0f}" y="{my - 9:.0f}" width="{width}" height="17" rx="8" '
                     f'style="fill: var(--jp-layout-color1, #fff); stroke: {color}"/>')
        parts.append(f'<text x="{mx:.0f}" y="{my + 4:.0f}" text-anchor="middle" style="font-family: '
                     f'var(--jp-ui-font-family, sans-serif); font-size: 11px; font-weight: 600; fill: {color}">'
                     f"{esc(text)}</text>")
    parts.append("</g>")
    return "".join(parts)


def svg(step_graph, states, arrows):
    """The graph as an inline SVG that scales down to the output's width (colours from JupyterLab's theme)."""
    width, height = step_graph.size()
    body = [_arrow(a, step_graph.positions, states) for a in arrows]
    body += [_box(states[name], *step_graph.positions[name]) for name in step_graph.order]
    return (f'<svg class="smr-graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" style="max-width: 100%; height: auto" role="img" aria-label="pipeline steps">'
            + "".join(body) + "</svg>")
