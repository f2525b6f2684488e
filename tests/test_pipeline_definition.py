"""The pipeline definition JSON built from step descriptions (pure: no R, no I/O), checked against the shapes
the SageMaker Python SDK v2's own unit tests expect (tests/unit/sagemaker/workflow/ in
aws/sagemaker-python-sdk, cited per test) and against botocore's model of the SageMaker API; the condition
parser and its bad input; the expressions the local executor evaluates; the step graph; cache durations."""

import copy
import json

import pytest

from sm_r_magic import spec
from sm_r_magic.errors import SmRMagicError
from sm_r_magic.workflow import condition as conditions
from sm_r_magic.workflow import definition as d
from sm_r_magic.workflow import durations, expressions, graph, names

ROOT = "/home/u/.sm-r-magic/output"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
PREP, FIT, EVAL = "prep-20270101-000000-aaaa", "fit-20270101-000001-bbbb", "evaluate-20270101-000002-cccc"
CONDITION = "evaluate.evaluation/evaluation.json:regression_metrics.rmse.value <= 3.5"


def _prep(inputs=None, outputs=None, name=PREP):
    return spec.processing_request(
        job_name=name, image="sm-r-magic:latest", role=ROLE, code_uri="/src/aa/sourcedir.tar.gz",
        inputs=inputs if inputs is not None else {"raw": "/data/mtcars.csv"},
        outputs=outputs if outputs is not None else {"train": f"{ROOT}/{name}/train", "test": f"{ROOT}/{name}/test"})


def _fit(channels=None, name=FIT):
    return spec.training_request(
        job_name=name, image="sm-r-magic:latest", role=ROLE, code_uri="/src/bb/sourcedir.tar.gz",
        channels=channels if channels is not None else {"train": f"{ROOT}/{PREP}/train"},
        hyperparameters={"formula": "mpg ~ wt + hp"}, output_path=ROOT)


def _eval():
    return spec.processing_request(
        job_name=EVAL, image="sm-r-magic:latest", role=ROLE, code_uri="/src/cc/sourcedir.tar.gz",
        inputs={"model": f"{ROOT}/{FIT}/output/model.tar.gz", "test": f"{ROOT}/{PREP}/test/test.csv"},
        outputs={"evaluation": f"{ROOT}/{EVAL}/evaluation"})


def flow():
    """The issue's three cells as step descriptions (what job handles give)."""
    return [{"kind": "processing", "request": _prep()}, {"kind": "training", "request": _fit()},
            {"kind": "processing", "request": _eval()}]


def steps_by_name(definition):
    return {name: step for name, (step, _, _) in graph.all_steps(definition).items()}


# -- step arguments, lineage, parameters, per-execution outputs ---------------------------------------------
def test_each_step_is_the_jobs_request_without_its_name_and_lineage_becomes_property_references():
    definition = d.build(flow())
    assert definition["Version"] == "2020-12-01"
    steps = steps_by_name(definition)
    assert [s["Name"] for s in definition["Steps"]] == ["prep", "fit", "evaluate"]
    assert [steps[n]["Type"] for n in ("prep", "fit", "evaluate")] == ["Processing", "Training", "Processing"]
    prep_args, fit_args, eval_args = (steps[n]["Arguments"] for n in ("prep", "fit", "evaluate"))
    assert "ProcessingJobName" not in prep_args and "TrainingJobName" not in fit_args
    assert set(prep_args) == set(_prep()) - {"ProcessingJobName"}
    assert set(fit_args) == set(_fit()) - {"TrainingJobName"}
    for key in ("AppSpecification", "Environment", "ProcessingResources", "StoppingCondition", "RoleArn", "Tags"):
        assert prep_args[key] == _prep()[key]
    for key in ("AlgorithmSpecification", "HyperParameters", "ResourceConfig", "StoppingCondition", "RoleArn"):
        assert fit_args[key] == _fit()[key]
    # property references, spelled as the SDK's Properties give them (test_properties.py)
    channel = fit_args["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == {"Get": "Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in eval_args["ProcessingInputs"]}
    assert inputs["model"] == {"Get": "Steps.fit.ModelArtifacts.S3ModelArtifacts"}
    # a file inside an output folder: Std:Join of the folder's reference and the rest (test_functions.py)
    assert inputs["test"] == {"Std:Join": {"On": "/", "Values": [
        {"Get": "Steps.prep.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}, "test.csv"]}}
    assert inputs["code"] == "/src/cc/sourcedir.tar.gz"  # the code is not data: it stays as it is
    assert graph.topological(definition["Steps"]) == ["prep", "fit", "evaluate"]


def test_steps_are_ordered_by_lineage_whatever_order_they_are_given_in():
    given = list(reversed(flow()))
    definition = d.build(given)
    assert [s["Name"] for s in definition["Steps"]] == ["prep", "fit", "evaluate"]


def test_other_data_inputs_become_string_parameters_with_the_current_uri_as_default():
    definition = d.build(flow())
    # test_parameters.py: {"Name", "Type", "DefaultValue"}, referenced as {"Get": "Parameters.<name>"}
    assert definition["Parameters"] == [{"Name": "raw", "Type": "String", "DefaultValue": "/data/mtcars.csv"}]
    raw = steps_by_name(definition)["prep"]["Arguments"]["ProcessingInputs"][0]
    assert raw["InputName"] == "raw" and raw["S3Input"]["S3Uri"] == {"Get": "Parameters.raw"}


def test_parameter_names_are_prefixed_with_the_step_only_when_two_steps_names_clash():
    other = _prep(inputs={"raw": "/data/other.csv"}, outputs={"x": f"{ROOT}/other-20270101-000003-dddd/x"},
                  name="other-20270101-000003-dddd")
    clash = d.build([{"kind": "processing", "request": _prep()}, {"kind": "processing", "request": other}])
    assert [(p["Name"], p["DefaultValue"]) for p in clash["Parameters"]] == [
        ("prep_raw", "/data/mtcars.csv"), ("other_raw", "/data/other.csv")]
    same = _prep(inputs={"raw": "/data/mtcars.csv"}, outputs={"x": f"{ROOT}/other-20270101-000003-dddd/x"},
                 name="other-20270101-000003-dddd")
    shared = d.build([{"kind": "processing", "request": _prep()}, {"kind": "processing", "request": same}])
    assert shared["Parameters"] == [{"Name": "raw", "Type": "String", "DefaultValue": "/data/mtcars.csv"}]
    # '.' is allowed in input names but not in parameter names
    dotted = d.build([{"kind": "processing", "request": _prep(inputs={"raw.v2": "/data/mtcars.csv"})}])
    assert dotted["Parameters"][0]["Name"] == "raw_v2"


def test_outputs_go_under_a_per_execution_prefix():
    steps = steps_by_name(d.build(flow()))
    execution_id = {"Get": "Execution.PipelineExecutionId"}  # test_execution_variables.py
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"]
               for o in steps["prep"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["train"] == {"Std:Join": {"On": "/", "Values": [ROOT, execution_id, "prep", "train"]}}
    assert steps["fit"]["Arguments"]["OutputDataConfig"]["S3OutputPath"] == {
        "Std:Join": {"On": "/", "Values": [ROOT, execution_id, "fit"]}}
    # an output location the user chose keeps its place, one folder per execution under it
    chosen = d.build([{"kind": "processing", "request": _prep(outputs={"train": "s3://bucket/train"})}])
    uri = chosen["Steps"][0]["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert uri == {"Std:Join": {"On": "/", "Values": ["s3://bucket/train", execution_id]}}
    # an explicit output root takes them all
    rooted = steps_by_name(d.build(flow(), output_root="s3://b/pipelines/mtcars/"))
    assert rooted["fit"]["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"][0] == \
        "s3://b/pipelines/mtcars"


def test_job_handles_and_dicts_give_the_same_step():
    class Handle:  # the fields a sm_r_magic.jobs.Job exposes
        kind, base_name, request = "processing", "prep", _prep()
        outputs = {"train": f"{ROOT}/{PREP}/train", "test": f"{ROOT}/{PREP}/test"}
        model_data = None

    assert d.build([Handle()]) == d.build([{"kind": "processing", "request": _prep()}])


# -- condition, property file, register, fail, cache ------------------------------------------------------
def test_condition_step_reads_the_property_file_the_evaluation_step_declares():
    definition = d.build(flow(), condition=CONDITION)
    steps = steps_by_name(definition)
    # test_steps.py: PropertyFiles on the processing step
    assert steps["evaluate"]["PropertyFiles"] == [
        {"PropertyFileName": "evaluation", "OutputName": "evaluation", "FilePath": "evaluation.json"}]
    # test_condition_step.py / test_functions.py: the condition over Std:JsonGet
    assert steps["condition"] == {"Name": "condition", "Type": "Condition", "Arguments": {
        "Conditions": [{"Type": "LessThanOrEqualTo",
                        "LeftValue": {"Std:JsonGet": {
                            "PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.evaluation"},
                            "Path": "regression_metrics.rmse.value"}},
                        "RightValue": 3.5}],
        "IfSteps": [], "ElseSteps": []}}
    assert graph.dependencies(steps["condition"]) == {"evaluate"}


@pytest.mark.parametrize("op, expected", [
    ("<=", {"Type": "LessThanOrEqualTo"}), ("<", {"Type": "LessThan"}), (">=", {"Type": "GreaterThanOrEqualTo"}),
    (">", {"Type": "GreaterThan"}), ("==", {"Type": "Equals"}), ("!=", {"Type": "Not"})])
def test_each_operator_is_the_sdk_condition_type(op, expected):
    parsed = conditions.parse(f"evaluate.evaluation/evaluation.json:a.b[0].c {op} 2")
    entry = parsed.to_json()
    assert entry["Type"] == expected["Type"]
    if op == "!=":  # ConditionNot(ConditionEquals(...)), test_condition_step.py
        assert entry["Expression"]["Type"] == "Equals" and entry["Expression"]["RightValue"] == 2
    else:
        assert entry["RightValue"] == 2 and entry["LeftValue"]["Std:JsonGet"]["Path"] == "a.b[0].c"


def test_register_and_fail_go_in_the_condition_branches():
    register = d.Register(group="mtcars-models", code_uri="/src/dd/sourcedir.tar.gz", approval="Approved")
    definition = d.build(flow(), condition=CONDITION, register=register, fail_message="RMSE above 3.5")
    condition = steps_by_name(definition)["condition"]["Arguments"]
    # test_step_collections.py: a RegisterModel step's Arguments are the CreateModelPackage request
    assert condition["IfSteps"] == [{"Name": "register", "Type": "RegisterModel", "Arguments": {
        "ModelPackageGroupName": "mtcars-models",
        "InferenceSpecification": {
            "Containers": [{"Image": "sm-r-magic:latest",
                            "ModelDataUrl": {"Get": "Steps.fit.ModelArtifacts.S3ModelArtifacts"},
                            "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": "/src/dd/sourcedir.tar.gz",
                                            "SAGEMAKER_PROGRAM": "inference.R"}}],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"]},
        "ModelApprovalStatus": "Approved",
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": {
            "Std:Join": {"On": "/", "Values": [
                {"Get": "Steps.evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
                "evaluation.json"]}}}}}}}]
    # test_fail_step.py
    assert condition["ElseSteps"] == [{"Name": "fail", "Type": "Fail", "Arguments": {"ErrorMessage": "RMSE above 3.5"}}]
    # the condition waits for everything its branches read
    assert graph.dependencies(steps_by_name(definition)["condition"]) == {"evaluate", "fit"}
    # without inference code, registered versions serve the code saved with the model
    plain = d.build(flow(), condition=CONDITION, register="mtcars-models")
    container = steps_by_name(plain)["register"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["Environment"] == {}
    assert steps_by_name(plain)["register"]["Arguments"]["ModelApprovalStatus"] == "PendingManualApproval"


def test_register_without_condition_is_a_top_level_step_after_training():
    definition = d.build(flow()[:2], register="mtcars-models")
    assert [s["Name"] for s in definition["Steps"]] == ["prep", "fit", "register"]
    assert "ModelMetrics" not in definition["Steps"][2]["Arguments"]
    assert graph.dependencies(definition["Steps"][2]) == {"fit"}


@pytest.mark.parametrize("given, iso", [("30d", "P30D"), ("12h", "PT12H"), ("1d12h", "P1DT12H"), ("90m", "PT90M"),
                                        ("P30D", "P30D"), ("p4dt12h", "P4DT12H"), ("2w", "P2W"), ("PT1S", "PT1S")])
def test_cache_sets_cache_config_on_job_steps(given, iso):
    definition = d.build(flow(), condition=CONDITION, register="m", cache=given)
    for step in graph.all_steps(definition).values():
        expected = {"Enabled": True, "ExpireAfter": iso} if step[0]["Type"] in ("Processing", "Training") else None
        assert step[0].get("CacheConfig") == expected  # test_steps.py: {"Enabled": True, "ExpireAfter": "PT1H"}


def test_cache_durations_in_seconds():
    assert durations.seconds("P1DT12H") == 36 * 3600
    assert durations.seconds("PT90M") == 5400
    assert durations.seconds("P2W") == 14 * 86400
    assert durations.seconds(durations.expire_after("1d12h")) == 36 * 3600


@pytest.mark.parametrize("bad", ["", "soon", "30x", "P", "PT", "P1DT", "-1d", "0d"])
def test_a_bad_cache_duration_says_what_to_write(bad):
    with pytest.raises(SmRMagicError, match="give a duration like 30d, 12h"):
        d.build(flow(), cache=bad or " ")


# -- botocore's model of the API ----------------------------------------------------------------------------
def test_definition_passes_botocores_create_pipeline_shape_and_our_name_pattern_is_botocores():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    create = model.operation_model("CreatePipeline").input_shape.members
    assert create["PipelineName"].metadata["pattern"] == names.PIPELINE_NAME.pattern
    group = model.operation_model("CreateModelPackage").input_shape.members["ModelPackageGroupName"]
    assert group.metadata["pattern"].endswith(names.GROUP_NAME.pattern)
    definition = d.build(flow(), condition=CONDITION, register="mtcars-models", fail_message="no", cache="30d")
    d.check_create_pipeline("mtcars", definition, ROLE)
    for bad in ("mtcars pipeline", "mtcars-", "-mtcars", "x" * 257):
        with pytest.raises(SmRMagicError, match="invalid pipeline name"):
            d.check_create_pipeline(bad, definition, ROLE)
    with pytest.raises(SmRMagicError, match="PipelineDefinition is 1048577 characters long"):
        names.check_request("CreatePipeline", {"PipelineName": "p", "PipelineDefinition": "x" * 1048577,
                                               "RoleArn": ROLE})


def test_resolved_step_arguments_are_valid_create_requests():
    """With every expression evaluated, each step's Arguments (plus a job name) is a request botocore accepts:
    the steps really are the API requests."""
    definition = d.build(flow(), condition=CONDITION, register="mtcars-models")
    ctx = expressions.Context(
        steps={"prep": {"ProcessingOutputConfig": _prep()["ProcessingOutputConfig"]},
               "fit": {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/fit/model.tar.gz"}},
               "evaluate": {"ProcessingOutputConfig": _eval()["ProcessingOutputConfig"]}},
        parameters={"raw": "s3://b/raw.csv"}, execution={"PipelineExecutionId": "abcdef123456"})
    steps = steps_by_name(definition)
    names.check_request("CreateProcessingJob", {"ProcessingJobName": "prep-x",
                                                **expressions.resolve(steps["prep"]["Arguments"], ctx)})
    names.check_request("CreateTrainingJob", {"TrainingJobName": "fit-x",
                                              **expressions.resolve(steps["fit"]["Arguments"], ctx)})
    names.check_request("CreateModelPackage", expressions.resolve(steps["register"]["Arguments"], ctx))


# -- bad input: one line each, before anything exists ------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("evalute.evaluation/evaluation.json:rmse <= 3", r"no step is named 'evalute' \(steps: prep, fit, evaluate\)"),
    ("evaluate.eval/evaluation.json:rmse <= 3", r"step evaluate writes no output 'eval' \(its outputs: evaluation\)"),
    ("prep.nothing/x.json:rmse <= 3", r"step prep writes no output 'nothing' \(its outputs: train, test\)"),
    ("fit.model/evaluation.json:rmse <= 3", "fit is a training step"),
    ("evaluate.evaluation/evaluation.json:rmse =< 3", "unknown operator '=<'"),
    ("evaluate.evaluation/evaluation.json:rmse = 3", "unknown operator '='"),
    ("evaluate.evaluation/evaluation.json:rmse ~ 3", "unknown operator '~'"),
    ("evaluate.evaluation/evaluation.json:rmse <= three", "right side 'three' .* is not a number"),
    ("evaluate.evaluation/evaluation.json:rmse <= nan", "is not a finite number"),
    ("evaluate.evaluation/evaluation.json:rmse <= inf", "is not a finite number"),
    ("evaluate.evaluation/evaluation.json:rmse <=", "malformed condition"),
    ("evaluate.evaluation:rmse <= 3", "malformed condition"),
    ("evaluate <= 3", "malformed condition"),
    ("rmse <= 3.5", "malformed condition"),
    ("   ", "the condition is empty"),
    ("evaluate.evaluation/evaluation.json:a..b <= 3", "malformed JSON path"),
    ("evaluate.evaluation/../x.json:rmse <= 3", "must be a path inside the output folder"),
])
def test_every_bad_condition_is_one_line_saying_what_to_write(text, message):
    with pytest.raises(SmRMagicError, match=message) as error:
        d.build(flow(), condition=text)
    assert "\n" not in str(error.value)


def test_a_condition_on_a_file_the_step_did_not_write_is_refused_when_it_can_be_checked():
    written = {f"{ROOT}/{EVAL}/evaluation/evaluation.json"}
    d.build(flow(), condition=CONDITION, file_exists=written.__contains__)
    with pytest.raises(SmRMagicError, match=r"wrote no report.json to its output evaluation .*sm_report"):
        d.build(flow(), condition=CONDITION.replace("evaluation.json", "report.json"),
                file_exists=written.__contains__)


def test_condition_parse_gives_its_parts():
    parsed = conditions.parse("evaluate.evaluation/sub/eval.json:$.metrics[1].value>=-2.5e-1")
    assert (parsed.step, parsed.output, parsed.file, parsed.path, parsed.operator, parsed.value) == (
        "evaluate", "evaluation", "sub/eval.json", "$.metrics[1].value", ">=", -0.25)
    assert parsed.property_file == "eval"


def _explicit(name, inputs, outputs):
    return {"kind": "processing", "request": _prep(inputs=inputs, outputs=outputs, name=name)}


@pytest.mark.parametrize("build, message", [
    (lambda: d.build([]), "a pipeline needs at least one step"),
    (lambda: d.build([{"kind": "processing", "request": _prep()}] * 2), "two steps are named prep"),
    (lambda: d.build([{"kind": "endpoint", "request": {}}]), "is not a processing or training job"),
    (lambda: d.build([flow()[0]], register="m"), "register needs a training step"),
    (lambda: d.build(flow() + [{"kind": "training", "request": _fit(name="fit2-20270101-000009-eeee")}],
                     register="m"), r"there are 2 training steps \(fit, fit2\): say which"),
    (lambda: d.build(flow(), register=d.Register(group="m", model_step="evaluate")),
     "'evaluate' is not a training step of this pipeline"),
    (lambda: d.build(flow(), register="mtcars_models"), "invalid model package group name 'mtcars_models'"),
    (lambda: d.build(flow(), register="-m"), "invalid model package group name"),
    (lambda: d.build(flow(), register=d.Register(group="m", approval="Yes")), "approval status 'Yes'"),
    (lambda: d.build(flow(), fail_message="x"), "a fail message needs a condition"),
    (lambda: d.build([_explicit("a-20270101-000000-aaaa", {"x": "/d/b-out"}, {"o": "/d/a-out"}),
                      _explicit("b-20270101-000000-aaaa", {"x": "/d/a-out"}, {"o": "/d/b-out"})]),
     "steps a, b depend on each other \\(a cycle\\)"),
    (lambda: d.build([_explicit("a-20270101-000000-aaaa", {"x": "/d/a-out/f.csv"}, {"o": "/d/a-out"})]),
     "step a reads /d/a-out/f.csv, which it writes itself"),
    (lambda: d.build([_explicit("a-20270101-000000-aaaa", {"x": "/d/in"}, {"o": "/d/same"}),
                      _explicit("b-20270101-000000-aaaa", {"x": "/d/in"}, {"o": "/d/same/"})]),
     "steps a and b both write /d/same"),
])
def test_bad_pipelines_are_one_line(build, message):
    with pytest.raises(SmRMagicError, match=message) as error:
        build()
    assert "\n" not in str(error.value)


def test_a_definition_larger_than_createpipeline_takes_is_refused():
    big = _prep()
    big["Environment"]["BIG"] = "x" * 1048576
    with pytest.raises(SmRMagicError, match="bytes: SageMaker takes at most 1048576"):
        d.build([{"kind": "processing", "request": big}])


# -- expressions ----------------------------------------------------------------------------------------
def _context(report=None):
    described = copy.deepcopy(_prep())
    described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = "/out/exec1/prep/train"
    return expressions.Context(
        steps={"prep": described, "fit": {"ModelArtifacts": {"S3ModelArtifacts": "/out/m.tar.gz"},
                                          "TrainingJobName": "fit-1"},
               "evaluate": {"ProcessingOutputConfig": {"Outputs": [
                   {"OutputName": "evaluation", "S3Output": {"S3Uri": "/out/exec1/evaluate/evaluation"}}]}}},
        parameters={"raw": "/data/new.csv"},
        execution={"PipelineExecutionId": "exec1", "CurrentDateTime": lambda: "now"},
        property_files={"evaluate": {"evaluation": {"PropertyFileName": "evaluation", "OutputName": "evaluation",
                                                    "FilePath": "evaluation.json"}}},
        read_json=lambda uri: {"/out/exec1/evaluate/evaluation/evaluation.json": report}[uri])


def test_expressions_evaluate_gets_joins_and_json_gets():
    ctx = _context(report={"regression_metrics": {"rmse": {"value": 2.75}}, "folds": [{"rmse": 3}, {"rmse": 4}]})
    get = expressions.evaluate
    assert get({"Get": "Steps.prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}, ctx) == \
        "/out/exec1/prep/train"
    assert get({"Get": "Steps.prep.ProcessingOutputConfig.Outputs[0].OutputName"}, ctx) == "train"
    assert get({"Get": "Steps.fit.ModelArtifacts.S3ModelArtifacts"}, ctx) == "/out/m.tar.gz"
    assert get({"Get": "Parameters.raw"}, ctx) == "/data/new.csv"
    assert get({"Get": "Execution.CurrentDateTime"}, ctx) == "now"
    assert get({"Std:Join": {"On": "/", "Values": ["/root", {"Get": "Execution.PipelineExecutionId"}, "prep", 1,
                                                   True]}}, ctx) == "/root/exec1/prep/1/true"
    json_get = conditions.parse(CONDITION).json_get()
    assert get(json_get, ctx) == 2.75
    indexed = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.evaluation"},
                               "Path": "$.folds[1].rmse"}}
    assert get(indexed, ctx) == 4
    resolved = expressions.resolve(steps_by_name(d.build(flow()))["fit"]["Arguments"], ctx)
    assert resolved["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "/out/exec1/prep/train"
    assert resolved["OutputDataConfig"]["S3OutputPath"] == f"{ROOT}/exec1/fit"


@pytest.mark.parametrize("expr, message", [
    ({"Get": "Steps.nope.X"}, "step nope has not run in this execution"),
    ({"Get": "Steps.fit.ModelArtifacts.Nope"}, r"no 'Nope' \(there is: S3ModelArtifacts\)"),
    ({"Get": "Steps.prep.ProcessingOutputConfig.Outputs['nope'].S3Output.S3Uri"}, "no item named 'nope'"),
    ({"Get": "Parameters.nope"}, "the pipeline has no parameter 'nope'"),
    ({"Get": "Execution.Nope"}, "unknown execution variable 'Nope'"),
    ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.evaluation"},
                      "Path": "regression_metrics.mae.value"}},
     "evaluation.json.regression_metrics.mae.value: no 'mae'"),
    ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.other"}, "Path": "x"}},
     "declares no property file 'other'"),
])
def test_expressions_that_cannot_be_evaluated_say_why(expr, message):
    ctx = _context(report={"regression_metrics": {"rmse": {"value": 2.75}}})
    with pytest.raises(expressions.ExpressionError, match=message):
        expressions.evaluate(expr, ctx)


def test_conditions_evaluate_like_sagemakers():
    ctx = _context(report={"regression_metrics": {"rmse": {"value": 3.5}}})
    rmse = conditions.parse(CONDITION).json_get()

    def holds(kind, right, left=rmse):
        return expressions.holds({"Type": kind, "LeftValue": left, "RightValue": right}, ctx)

    assert holds("LessThanOrEqualTo", 3.5) and not holds("LessThan", 3.5)
    assert holds("GreaterThanOrEqualTo", 3.5) and not holds("GreaterThan", 3.5)
    assert holds("Equals", 3.5) and holds("Equals", "3.5")  # a number and a numeric string compare as numbers
    assert expressions.holds(conditions.parse(CONDITION.replace("<=", "!=")).to_json(), ctx) is False
    assert expressions.holds({"Type": "In", "QueryValue": {"Get": "Parameters.raw"},
                              "Values": ["/a", "/data/new.csv"]}, ctx)
    assert expressions.holds({"Type": "Or", "Conditions": [
        {"Type": "Equals", "LeftValue": 1, "RightValue": 2}, {"Type": "LessThan", "LeftValue": rmse, "RightValue": 4}]},
        ctx)
    assert expressions.all_hold([conditions.parse(CONDITION).to_json(),
                                 conditions.parse(CONDITION.replace("<= 3.5", "> 3")).to_json()], ctx)
    with pytest.raises(expressions.ExpressionError, match="cannot compare"):
        holds("LessThan", 3, left="abc")


# -- the graph ------------------------------------------------------------------------------------------
def test_graph_refuses_unknown_references_duplicate_names_and_cycles():
    base = d.build(flow())
    broken = copy.deepcopy(base)
    broken["Steps"][1]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = \
        {"Get": "Steps.prepp.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    with pytest.raises(SmRMagicError, match="step fit refers to step\\(s\\) prepp"):
        graph.check(broken)
    twice = copy.deepcopy(base)
    twice["Steps"].append(copy.deepcopy(twice["Steps"][0]))
    with pytest.raises(SmRMagicError, match="two pipeline steps are named prep"):
        graph.check(twice)
    cyclic = copy.deepcopy(base)
    cyclic["Steps"][0]["DependsOn"] = ["evaluate"]
    with pytest.raises(SmRMagicError, match="depend on each other"):
        graph.check(cyclic)
    assert json.loads(d.to_json(base)) == base
