"""The step graph of a pipeline definition: which steps each step needs (the steps its expressions refer to,
its DependsOn, and for a Condition step everything its branches refer to), in which order they can run, and
the checks that make a definition runnable (unique names, known references, no cycle). Pure."""

from ..errors import SmRMagicError
from . import names

BRANCHES = ("IfSteps", "ElseSteps")


def references(obj):
    """The step names `obj` refers to through {"Get": "Steps.<name>...."}, anywhere inside it."""
    found = set()
    if isinstance(obj, dict):
        get = obj.get("Get")
        if len(obj) == 1 and isinstance(get, str) and get.startswith("Steps."):
            found.add(get.split(".", 2)[1].split("[", 1)[0])
        for value in obj.values():
            found |= references(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= references(value)
    return found


def branch_steps(step):
    """{'IfSteps': [...], 'ElseSteps': [...]} of a Condition step (empty for other steps)."""
    if step.get("Type") != "Condition":
        return {}
    arguments = step.get("Arguments") or {}
    return {branch: list(arguments.get(branch) or []) for branch in BRANCHES}


def all_steps(definition):
    """name -> (step, the Condition step it is a branch of or None, 'IfSteps'/'ElseSteps' or None)."""
    found = {}

    def visit(step, parent, branch):
        name = step.get("Name")
        if not isinstance(name, str) or not names.STEP_NAME.fullmatch(name):
            raise SmRMagicError(f"pipeline step name {name!r}: use 1-64 letters, digits, '-' and '_'")
        if name in found:
            raise SmRMagicError(f"two pipeline steps are named {name}: give each step its own name")
        found[name] = (step, parent, branch)
        for branch_name, children in branch_steps(step).items():
            for child in children:
                visit(child, name, branch_name)

    for step in definition.get("Steps") or []:
        visit(step, None, None)
    return found


def dependencies(step):
    """The names of the steps `step` needs to have succeeded before it runs."""
    needed = references({k: v for k, v in step.items() if k not in ("Name", "Type")}) | set(step.get("DependsOn") or [])
    own = {child.get("Name") for children in branch_steps(step).values() for child in children}
    return needed - own - {step.get("Name")}


def topological(steps):
    """Names of `steps` (dicts with Name and the references above), each after the steps it needs; the
    given order is kept where the graph allows. A cycle is one line naming its steps."""
    by_name = {step["Name"]: step for step in steps}
    needs = {name: dependencies(step) & set(by_name) for name, step in by_name.items()}
    ordered, done = [], set()
    while len(ordered) < len(by_name):
        ready = [name for name in by_name if name not in done and needs[name] <= done]
        if not ready:
            stuck = [name for name in by_name if name not in done]
            raise SmRMagicError(f"steps {', '.join(stuck)} depend on each other (a cycle): each step may only read "
                                "what other steps wrote before it")
        for name in ready:
            ordered.append(name)
            done.add(name)
    return ordered


def check(definition):
    """Raise SmRMagicError unless every step name is unique and valid, every reference names a step, and the
    graph has no cycle. Returns all_steps(definition)."""
    if definition.get("Version") != "2020-12-01":
        raise SmRMagicError(f"pipeline definition Version {definition.get('Version')!r}: expected 2020-12-01")
    steps = all_steps(definition)
    if not steps:
        raise SmRMagicError("the pipeline definition has no steps")
    for name, (step, _, _) in steps.items():
        unknown = dependencies(step) - set(steps)
        if unknown:
            raise SmRMagicError(f"pipeline step {name} refers to step(s) {', '.join(sorted(unknown))}, which the "
                                "pipeline does not have")
    runnable = []
    for name, (step, parent, _) in steps.items():
        needs = dependencies(step) | ({parent} if parent else set())
        runnable.append({"Name": name, "DependsOn": sorted(needs)})
    topological(runnable)
    return steps
