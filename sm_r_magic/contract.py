"""Names both sides of the SageMaker API agree on, in one place: the status of each kind of handle and the
request keys that name it. (The container's own contract - /opt/ml paths, SM_* variables, program names - is
in spec.py and the container's R files.)"""

JOB_KINDS = ("training", "processing")
FOLDER_BACKENDS = ("local", "docker")  # one local root and one code store: either runs the other's requests
JOB_TERMINAL = ("Completed", "Failed", "Stopped")
ENDPOINT_TERMINAL = ("InService", "Failed", "Deleted", "OutOfService")

# DescribeTrainingJob / DescribeProcessingJob: which key holds the status, which the name
STATUS_KEY = {"training": "TrainingJobStatus", "processing": "ProcessingJobStatus"}
NAME_KEY = {"training": "TrainingJobName", "processing": "ProcessingJobName"}
KIND_LABEL = {"training": "training job", "processing": "processing job", "endpoint": "endpoint",
              "pipeline": "pipeline execution"}

# -- the shared container's contract (DESIGN.md section 2), as sagemaker-training-toolkit names its own --------
OPT_ML = "/opt/ml"                                  # SageMaker's root in every job and endpoint container
PROCESSING_ROOT = f"{OPT_ML}/processing"           # /input/<name>, /output/<name>
CHECKPOINT_DIR = f"{OPT_ML}/checkpoints"
CONTAINER_DIR = "/opt/sm_r_magic"                   # where the image keeps entrypoint.sh and the R files
ENTRYPOINT = f"{CONTAINER_DIR}/entrypoint.sh"       # modes: train, process, serve
SOURCEDIR_NAME = "sourcedir.tar.gz"
MODEL_ARTIFACT = "model.tar.gz"
OUTPUT_ARTIFACT = "output.tar.gz"
TRAIN_PROGRAM, PROCESS_PROGRAM, INFERENCE_PROGRAM = "train.R", "process.R", "inference.R"
CODE_INPUT = "code"                                 # the processing input that carries sourcedir.tar.gz

# hyperparameters the SageMaker SDK convention reserves (not the user's): which program, where the code is
HP_PROGRAM = "sagemaker_program"
HP_SUBMIT_DIRECTORY = "sagemaker_submit_directory"
RESERVED_HP_PREFIX = "sagemaker_"

# environment of processing jobs and endpoints (SageMaker's inference toolkits read the same names)
ENV_PROGRAM = "SAGEMAKER_PROGRAM"
ENV_SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"
ENV_BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
ENV_TRAINING_JOB_NAME = "TRAINING_JOB_NAME"
ENV_PROCESSING_JOB_NAME = "PROCESSING_JOB_NAME"

# sm-r-magic's own settings of the container (container/*.R read them)
ENV_ROOT = "SM_R_MAGIC_ROOT"                  # the job's /opt/ml (a job folder locally)
ENV_PYTHON = "SM_R_MAGIC_PYTHON"              # the Python that runs container/fetch.py (S3)
ENV_RSCRIPT = "SM_R_MAGIC_RSCRIPT"
ENV_R_LIBRARY = "SM_R_MAGIC_R_LIBRARY"        # the cached library of per-job packages
ENV_PACKAGES = "SM_R_MAGIC_PACKAGES"          # --packages
ENV_R_REPOS = "SM_R_MAGIC_R_REPOS"            # where per-job packages come from
ENV_WORKERS = "SM_R_MAGIC_WORKERS"            # R workers of an endpoint
ENV_BIND_HOST = "SM_R_MAGIC_BIND_HOST"        # 127.0.0.1 for local endpoints
ENV_WARMPOOL_CACHE = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"  # SageMaker's: kept with a warm pool's instance
WARMPOOL_CACHE_DIR = f"{OPT_ML}/sagemaker/warmpoolcache"               # where SageMaker puts it
ENV_MODEL_DATA = "SM_R_MAGIC_MODEL_DATA"      # a model.tar.gz to extract into the model folder (local, docker)
