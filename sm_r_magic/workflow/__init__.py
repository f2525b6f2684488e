"""Pipelines made from the cells a user ran: the definition JSON SageMaker's CreatePipeline takes
(definition.py, from job handles; condition.py parses the condition), its expressions (expressions.py) and
graph (graph.py), a local executor of that same JSON (executions.py starts and describes executions,
executor.py runs them, runner.py is the detached process), and the local model registry (registry.py).
docs/pipelines.md describes the design and the JSON contract."""
