//! The `mlcd.yml` types. Strict: unknown keys are errors. The doc comments become
//! the descriptions in the committed JSON schema (`schema/mlcd.schema.json`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{
    Backend, ByteSize, ColumnType, DriftMethod, DurationSpec, Gate, ImageRef, InstanceType,
    ModelId, OnDrift, OnStop, Percent, PredictionsFrom, Protocol, RegistryRef, RegistryType,
    Scalar, Steps, Strategy, Tag,
};

/// mlcd configuration: how a model is built, trained and deployed. Inputs given to the
/// action or the CLI override the values here.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "mlcd.yml")]
pub struct Config {
    /// The model's slug, the default for the `model-id` input: it names images, jobs,
    /// endpoints and registry entries.
    pub model: Option<ModelId>,
    /// Where jobs and endpoints run: `local` (the Docker engine on this machine, the
    /// default), `sagemaker`, `vertex` or `kubernetes`.
    pub backend: Option<Backend>,
    /// How the model image is built and where it is pushed.
    #[serde(default)]
    pub build: BuildConfig,
    /// How the model is trained.
    #[serde(default)]
    pub train: TrainConfig,
    /// How the model is served and rolled out.
    #[serde(default)]
    pub deploy: DeployConfig,
    /// The model registry that records trained versions.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Amazon SageMaker settings (for `backend: sagemaker` or `registry.type: sagemaker`).
    #[serde(default)]
    pub sagemaker: SagemakerConfig,
    /// Google Vertex AI settings (for `backend: vertex`).
    #[serde(default)]
    pub vertex: VertexConfig,
    /// Kubernetes settings (for `backend: kubernetes`).
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// Drift and model-quality checks (`mode: monitor`).
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Write the report comment: one per model on the pull request (edited in
    /// place by every later run), or on the commit when there is none. The
    /// `comment` input overrides it. Default: true.
    pub comment: Option<bool>,
}

/// How the model image is built and where it is pushed.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildConfig {
    /// The build context directory, relative to this file. Default: this file's directory.
    pub context: Option<String>,
    /// The Dockerfile, relative to the context. Default: `Dockerfile`.
    pub dockerfile: Option<String>,
    /// The Dockerfile stage to build.
    pub target: Option<String>,
    /// The registry (and namespace) images are pushed to; the image is
    /// `<registry>/<model>`. Example: `ghcr.io/acme`.
    pub registry: Option<RegistryRef>,
    /// More registries the same image is pushed to.
    #[serde(default)]
    pub registries: Vec<RegistryRef>,
    /// Build arguments (`ARG`s in the Dockerfile).
    #[serde(default)]
    pub args: BTreeMap<String, Scalar>,
    /// Target platforms, like `linux/amd64`.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Extra image labels (the OCI lineage labels are always added).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra image tags (the commit, branch, semver and `latest` tags are always computed).
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// How the model is trained.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrainConfig {
    /// The image to train. Default: the image built for this commit.
    pub image: Option<ImageRef>,
    /// The instance type: a portable name (`cpu.small`, `gpu.t4.xl`, …) or a native type.
    pub instance: Option<InstanceType>,
    /// How many instances. Default: 1.
    pub count: Option<u32>,
    /// Hyperparameters, passed to the container as strings in
    /// `/opt/ml/input/config/hyperparameters.json`.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, Scalar>,
    /// Input channels: name → local directory (relative to this file) or a remote URI
    /// (`s3://…`, `gs://…`); mounted at `/opt/ml/input/data/<name>/`. On SageMaker a
    /// local directory is uploaded to the default bucket
    /// (`s3://sagemaker-<region>-<account>/mlcd/channels/<model>/<name>/<digest>/`),
    /// once per content: an unchanged directory is not uploaded again.
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
    /// Where model artifacts go on remote backends (`s3://…`, `gs://…`). SageMaker
    /// default: `sagemaker.output-path`, else the SageMaker SDK's default bucket
    /// `s3://sagemaker-<region>-<account>/` (created when missing).
    pub output: Option<String>,
    /// How long mlcd waits for the job. Default: `1h`.
    pub timeout: Option<DurationSpec>,
    /// The job's own maximum runtime on the backend. Default: the timeout.
    pub max_runtime: Option<DurationSpec>,
    /// Wait for the job to finish. Default: true.
    pub wait: Option<bool>,
    /// What to do with the job when the wait times out: `stop` (default) or `leave`.
    pub on_timeout: Option<OnStop>,
    /// What to do with the job when the workflow is cancelled: `stop` (default) or `leave`.
    pub on_cancel: Option<OnStop>,
    /// Environment variables for the training container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Metrics read from the logs with regular expressions (SageMaker MetricDefinitions);
    /// `/opt/ml/output/metrics.json` is always read too.
    #[serde(default)]
    pub metrics: Vec<MetricDefinition>,
    /// Gates a trained model must pass to be registered: metric → `>= 0.90`.
    #[serde(default)]
    pub gates: BTreeMap<String, Gate>,
    /// Compare with the production model version (champion/challenger) on this metric.
    pub champion: Option<ChampionGate>,
}

/// A metric read from the training logs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricDefinition {
    /// The metric's name.
    pub name: String,
    /// A regular expression whose first group is the value.
    pub regex: String,
}

/// A champion/challenger gate.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChampionGate {
    /// The metric to compare.
    pub metric: String,
    /// `higher` (default) or `lower` is better.
    #[serde(default)]
    pub better: Better,
    /// The registry alias that marks the champion. Default: `production`.
    pub alias: Option<String>,
}

/// Which direction of a metric is better.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    /// Higher is better (accuracy, AUC).
    #[default]
    Higher,
    /// Lower is better (loss, error).
    Lower,
}

/// How the model is served and rolled out.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeployConfig {
    /// The endpoint's name. Default: the model id.
    pub endpoint: Option<String>,
    /// The image or model version to deploy. Default: the one trained for this commit.
    pub image: Option<ImageRef>,
    /// The instance type for serving.
    pub instance: Option<InstanceType>,
    /// How many serving replicas. Default: 1.
    pub replicas: Option<u32>,
    /// Server worker processes per replica.
    pub workers: Option<u32>,
    /// Request batching.
    pub batching: Option<Batching>,
    /// Per-request timeout. Default: `60s`.
    pub request_timeout: Option<DurationSpec>,
    /// How long a new version may take to become ready. Default: `10m`.
    pub ready_timeout: Option<DurationSpec>,
    /// `all-at-once`, `canary`, `linear`, `blue-green` or `shadow`. Default: `all-at-once`.
    pub strategy: Option<Strategy>,
    /// Traffic percentages for canary and linear rollouts, rising, like `[10, 50, 100]`.
    pub steps: Option<Steps>,
    /// Traffic for the first step (overridden by the `traffic` input).
    pub traffic: Option<Percent>,
    /// Time between traffic steps. Default: `5m`.
    pub interval: Option<DurationSpec>,
    /// The variation's name (Qwak's `variation-name`), like `shadow` or `challenger`.
    pub variation: Option<String>,
    /// The GitHub environment the deployment is reported to. Default: `production`.
    pub environment: Option<String>,
    /// The protocol the serving container speaks: `sagemaker` (default) or `v2`.
    pub protocol: Option<Protocol>,
    /// Environment variables for the serving container.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Smoke tests sent to every new version before it takes traffic.
    #[serde(default)]
    pub smoke: Vec<SmokeTest>,
    /// When to roll back automatically.
    #[serde(default)]
    pub rollback: RollbackConfig,
    /// Deploy through GitOps: a commit to a manifests repository, followed
    /// through Argo CD to a healthy rollout.
    pub gitops: Option<super::gitops::GitopsConfig>,
    /// Capture the endpoint's requests and answers as JSON lines in SageMaker's
    /// data capture format (`deploy.capture: {}` turns it on with the defaults).
    pub capture: Option<CaptureConfig>,
}

/// Traffic capture: sampled requests and answers written as JSON lines
/// (`captureData.endpointInput` / `endpointOutput`, `eventMetadata`), never
/// blocking or failing a request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureConfig {
    /// The share of requests captured, like `100%` or `10%`. Default: `100%`.
    pub sample: Option<Percent>,
    /// Where the capture files go. `backend: local`: the directory on this
    /// machine `*.jsonl` files are copied to from the endpoint's router,
    /// relative to this file and inside the workspace (default
    /// `.mlcd/capture/<endpoint>/` in the workspace). `backend:
    /// sagemaker`: the `s3://bucket/prefix` SageMaker writes to (required).
    pub path: Option<String>,
    /// `backend: local`: a capture file is closed and a new one started at this
    /// size. Default: `16MB`.
    pub rotate_size: Option<ByteSize>,
    /// `backend: local`: the most capture data the endpoint's router keeps; the
    /// oldest files are deleted past it. Default: `256MB`.
    pub max_size: Option<ByteSize>,
    /// `backend: local`: records waiting to be written; when the queue is full a
    /// record is dropped and counted, never the request. Default: 1024.
    pub queue: Option<u32>,
}

/// Request batching for the serving container.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Batching {
    /// The largest batch.
    pub max_batch_size: u32,
    /// The longest a request waits for its batch to fill.
    pub max_latency: DurationSpec,
}

/// A sample request and what its answer must look like.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SmokeTest {
    /// The request body file, relative to this file.
    pub request: String,
    /// The content type of the request. Default: `application/json`.
    pub content_type: Option<String>,
    /// The HTTP status the answer must have. Default: 200.
    pub expect_status: Option<u16>,
    /// A file holding the expected answer (JSON compared structurally).
    pub expect_output: Option<String>,
    /// The slowest acceptable answer, like `500ms`.
    pub max_latency: Option<DurationSpec>,
}

/// When a deployment rolls back on its own.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RollbackConfig {
    /// Roll back when a smoke test fails. Default: true.
    pub on_smoke_failure: Option<bool>,
    /// CloudWatch alarm names that roll a SageMaker deployment back.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// Roll back when the new version's share of 5xx answers to live traffic
    /// (0 to 1, like `0.01`) exceeds this during a canary or linear step's interval.
    pub max_error_rate: Option<f64>,
    /// Roll back when the new version's 95th-percentile latency on live traffic
    /// exceeds this during a canary or linear step's interval, like `250ms`.
    pub max_p95_latency: Option<DurationSpec>,
}

/// The model registry that records trained versions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryConfig {
    /// `local` (a directory, the default), `mlflow` or `sagemaker`.
    #[serde(rename = "type")]
    pub kind: Option<RegistryType>,
    /// For `local`: the directory. Default: `.mlcd/registry` in the workspace.
    pub path: Option<String>,
    /// For `mlflow`: the tracking server URI.
    pub tracking_uri: Option<String>,
    /// The registered model's name. Default: the model id.
    pub model_name: Option<String>,
    /// The alias a passing version gets. Default: none (promotion is a deploy decision).
    pub alias: Option<String>,
}

/// Amazon SageMaker settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SagemakerConfig {
    /// The AWS region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// The execution role SageMaker assumes for jobs and endpoints.
    pub role_arn: Option<String>,
    /// Where training output goes (`s3://bucket/prefix`; `train.output` wins). Default:
    /// `s3://sagemaker-<region>-<account>/`, the SageMaker SDK's default bucket,
    /// created when missing; the model lands at `<output>/<job>/output/model.tar.gz`.
    pub output_path: Option<String>,
    /// Subnets for jobs and endpoints in a VPC.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security groups for jobs and endpoints in a VPC.
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// Google Vertex AI settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VertexConfig {
    /// The Google Cloud project.
    pub project: Option<String>,
    /// The region, like `us-central1`.
    pub region: Option<String>,
    /// The service account jobs run as.
    pub service_account: Option<String>,
    /// Staging bucket (`gs://bucket[/prefix]`): training output goes to
    /// `<staging-bucket>/<job>/`, the model to `<staging-bucket>/<job>/model/`;
    /// local channel directories are uploaded to `gs://<bucket>/mlcd/channels/`.
    pub staging_bucket: Option<String>,
    /// The Vertex AI API endpoint, for Private Service Connect or tests (like
    /// `https://us-central1-aiplatform.googleapis.com/`). Default: the region's
    /// public endpoint, or CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM when set.
    pub api_endpoint: Option<String>,
}

/// Kubernetes settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubernetesConfig {
    /// The namespace. Default: `default`.
    pub namespace: Option<String>,
    /// The kubeconfig context. Default: the current one.
    pub context: Option<String>,
    /// An Amazon EKS cluster's name: mlcd makes its bearer tokens itself (as
    /// `aws eks get-token` does) from the run's AWS credentials, so the `aws`
    /// binary is not needed; the kubeconfig still gives the server and its CA.
    /// A context whose user runs `aws eks get-token --cluster-name …` is
    /// recognised without it.
    pub eks_cluster: Option<String>,
    /// The EKS cluster's region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub eks_region: Option<String>,
    /// The service account jobs and predictors run as.
    pub service_account: Option<String>,
    /// Where model artifacts are stored. Training keeps `/opt/ml/model` under it:
    /// `pvc://claim/path` (a directory `<job>/model` in the claim) or
    /// `s3://bucket/prefix` (`<job>/model.tar.gz`, uploaded from the pod by mlcd's
    /// `mlcd-keep-model` sidecar). Serving (KServe) downloads the model from it
    /// into `/opt/ml/model`: `s3://`, `gs://`, `pvc://`, `hdfs://`, `webhdfs://`,
    /// `http(s)://` or `hf://`; unset, the image carries its model.
    pub storage_uri: Option<String>,
    /// The mlcd image training pods run mlcd's storage containers from
    /// (`mlcd-fetch` copies `s3://` channels in, `mlcd-keep-model` uploads the
    /// model to an `s3://` storage URI). Default: `ghcr.io/mlcd-dev/mlcd:<this
    /// mlcd's version>`; mirror it to your registry when the cluster cannot pull
    /// from ghcr.io.
    pub mlcd_image: Option<String>,
    /// A Secret in the namespace holding the S3 credentials of mlcd's storage
    /// containers under the keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// optionally `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`. Unset:
    /// the pods' service account's identity (EKS IRSA / Pod Identity inject it).
    pub aws_secret: Option<String>,
    /// Which training CRD jobs are: `trainjob` (Kubeflow Trainer v2, the default)
    /// or `pytorchjob` (Training Operator v1, for clusters that still run it).
    pub trainer: Option<KubeTrainer>,
    /// The `ClusterTrainingRuntime` a TrainJob runs on. Default: `torch-distributed`.
    pub runtime: Option<String>,
    /// How KServe runs the InferenceService: `serverless` (Knative revisions:
    /// canary and linear steps through `canaryTrafficPercent`, tag URLs) or
    /// `standard` (KServe's RawDeployment: a Deployment rolled over, so only
    /// `all-at-once` and `blue-green`). Default: the cluster's own default mode.
    pub deployment_mode: Option<KserveMode>,
}

/// KServe's deployment mode for an InferenceService.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KserveMode {
    /// Knative Serving: a revision per change, traffic split between revisions.
    Serverless,
    /// Plain Kubernetes Deployments (KServe's `RawDeployment`, "Standard" since
    /// v0.15): a rolling update, no traffic split.
    Standard,
}

/// The Kubernetes training CRD mlcd creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KubeTrainer {
    /// Kubeflow Trainer v2 `TrainJob` (trainer.kubeflow.org/v1alpha1).
    #[default]
    Trainjob,
    /// Training Operator v1 `PyTorchJob` (kubeflow.org/v1).
    Pytorchjob,
}

/// Drift and model-quality checks (`mode: monitor`): recent data against the
/// training data, and the model's metric on labelled recent data against the
/// production version's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MonitorConfig {
    /// The reference data: a CSV, JSON lines or Parquet file or a directory of them,
    /// relative to this file, or an `s3://` prefix. Default: the training
    /// channel (`train.channels.train`, or the only channel).
    pub reference: Option<String>,
    /// The recent data: a CSV, JSON lines or Parquet file or a directory of them (relative
    /// to this file), `capture` (the local endpoint's captured traffic, under
    /// `.mlcd/capture/<endpoint>/`), or an `s3://` prefix of SageMaker data capture
    /// files. Default: `capture`.
    pub current: Option<String>,
    /// Only these columns are compared. Default: every column both samples have.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Columns never compared (ids, timestamps).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Column types, where the values would mislead: column → `numeric` or
    /// `categorical` (numbers that are codes, say).
    #[serde(default)]
    pub types: BTreeMap<String, ColumnType>,
    /// How drift is measured: `auto` (default, Evidently's choice by type and
    /// size), `ks`, `wasserstein`, `psi`, `jensenshannon`, `chisquare`, `z`, `linf`.
    pub method: Option<DriftMethod>,
    /// Per-column methods: column → method.
    #[serde(default)]
    pub methods: BTreeMap<String, DriftMethod>,
    /// The drift threshold for every column: a p-value (`ks`, `chisquare`, `z`:
    /// drift below it, default 0.05) or a distance (drift at or above it, default 0.1).
    pub threshold: Option<f64>,
    /// Per-column thresholds: column → threshold.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f64>,
    /// The dataset drifts when at least this share of its columns drifts (0 to 1).
    /// Default: 0.5.
    pub drift_share: Option<f64>,
    /// Fewer rows than this in either sample makes the result `inconclusive`
    /// (never "no drift"). Default: 30.
    pub min_rows: Option<u64>,
    /// The label column of labelled recent data: turns on the model-quality check.
    pub labels: Option<String>,
    /// The column holding the model's predictions for those rows.
    /// Default: `prediction`.
    pub predictions: Option<String>,
    /// Where the predictions come from: `column` (default: the `predictions`
    /// column of the recent data), `capture` (the endpoint's captured
    /// responses — the local capture, or SageMaker's data capture files under
    /// `deploy.capture.path` in S3 — joined to the labelled rows by
    /// `id-column`) or `endpoint` (the live endpoint is asked for each labelled
    /// row — on SageMaker with InvokeEndpoint — at most `predict-max-rows` rows
    /// at `predict-rate` requests a second). `capture` and `endpoint`: backends
    /// local and sagemaker. An answer row that is an object gives its field
    /// named like the label column.
    pub predictions_from: Option<PredictionsFrom>,
    /// `predictions-from: capture`: the column of the labelled recent data
    /// holding each request's inference id (what the caller sent as
    /// `X-Amzn-SageMaker-Inference-Id`; `eventMetadata.inferenceId` in the
    /// capture). Default: `inference_id`.
    pub id_column: Option<String>,
    /// `predictions-from: endpoint`: at most this many rows are sent. Default: 1000.
    pub predict_max_rows: Option<u64>,
    /// `predictions-from: endpoint`: at most this many requests a second.
    /// Default: 20.
    pub predict_rate: Option<f64>,
    /// The metric compared with the production version's: `accuracy` (default),
    /// `error-rate`, `mae` or `rmse`.
    pub metric: Option<String>,
    /// How far the metric may fall below the production version's before the
    /// model counts as degraded (in the metric's units). Default: 0.
    pub metric_below_baseline: Option<f64>,
    /// What to do on drift or degraded quality: `report` (default), `fail`
    /// (exit 1) or `dispatch` (send a `repository_dispatch` to this repository).
    pub on_drift: Option<OnDrift>,
    /// The `repository_dispatch` event type sent by `on-drift: dispatch`.
    /// Default: `retrain`.
    pub event_type: Option<String>,
    /// Where the HTML report is written, relative to the workspace.
    /// Default: `.mlcd/monitor/<model>.html`.
    pub report: Option<String>,
}
