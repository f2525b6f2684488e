"""What a pipeline made from the cells a user ran is, whoever runs it: the definition JSON SageMaker's
CreatePipeline takes (definition.py, from job handles; condition.py parses the condition), its expressions
(expressions.py) and graph (graph.py), names and durations, the handle of an execution (execution.py), and the
move of a definition made of local cells to SageMaker (retarget.py). How each backend runs one lives with the
backends (local and docker: backends/folder_executions.py, pipeline_executor.py, pipeline_runner.py and the
local model registry, local_registry.py; SageMaker: sagemaker_pipelines.py, sagemaker_registry.py).
docs/pipelines.md describes the design and the JSON contract."""
