"""Names both sides of the SageMaker API agree on, in one place: the status of each kind of handle and the
request keys that name it. (The container's own contract - /opt/ml paths, SM_* variables, program names - is
in spec.py and the container's R files.)"""

JOB_KINDS = ("training", "processing")
JOB_TERMINAL = ("Completed", "Failed", "Stopped")
ENDPOINT_TERMINAL = ("InService", "Failed", "Deleted", "OutOfService")

# DescribeTrainingJob / DescribeProcessingJob: which key holds the status, which the name
STATUS_KEY = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}
NAME_KEY = {"training": "TrainingJobName", "processing": "ProcessingJobName"}
KIND_LABEL = {"training": "training job", "processing": "processing job", "endpoint": "endpoint"}
