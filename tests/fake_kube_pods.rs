//! The fake API server's kubelet mode (server.py --run-containers,
//! tests/fake_kube/kubelet.py), driven by the real `kubectl`: the pods of a
//! PyTorchJob and of a TrainJob run as real containers on the test bed's Docker
//! engine — init containers before the main one, a native sidecar alive during it
//! and stopped after it with its termination message, env from a Secret made by
//! `kubectl create secret`, logs per container, the job's condition from the pods —
//! and the failures a kubelet reports: a failing main or init container, a missing
//! Secret (CreateContainerConfigError), an image the engine does not have — and what
//! `mlcd render train` prints (PyTorchJob and TrainJob) training the example model
//! for real, its data and model on PVCs. Each test asserts the fake saw no schema
//! violation.
//!
//! Needs the test bed (`. .testbed/env`: DOCKER_HOST and its local/busybox image),
//! python3 with PyYAML and `kubernetes-validate`, and kubectl on PATH.

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;
use common::*;
use fake_kube::FakeKube;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn testbed() -> BTreeMap<String, String> {
    testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BUSYBOX_IMAGE"])
}

fn kubectl_ok(fake: &FakeKube, args: &[&str]) -> String {
    let r = fake.kubectl(args);
    assert_eq!(r.code, 0, "kubectl {args:?}\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

/// `kubectl wait --for=condition=<condition> <object>`; on a timeout, fails
/// showing the pods' statuses.
fn wait_for(fake: &FakeKube, condition: &str, object: &str) {
    let cond = format!("--for=condition={condition}");
    let r = fake.kubectl(&["wait", &cond, object, "--timeout=60s"]);
    if r.code != 0 || !r.stdout.contains("condition met") {
        let pods = fake.kubectl(&["get", "pods", "-o", "jsonpath={.items[*].status}"]);
        panic!(
            "{object} never {condition}: {}{}
pods: {}",
            r.stdout, r.stderr, pods.stdout
        );
    }
}

/// `kubectl apply -f` of `yaml`, with BUSYBOX replaced by the test bed's image.
fn apply(fake: &FakeKube, tb: &BTreeMap<String, String>, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(
        &file,
        yaml.replace("BUSYBOX", &tb["MLCD_TESTBED_BUSYBOX_IMAGE"]),
    )
    .unwrap();
    kubectl_ok(fake, &["apply", "-f", &file.display().to_string()]);
}

fn get_json(fake: &FakeKube, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&kubectl_ok(fake, &all)).unwrap()
}

/// The status of container `name` (main, init or sidecar) in a pod object.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod["status"][k].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no status for container {name} in {:#}", pod["status"]))
}

/// Polls `f` until it gives a value, failing after `secs` with `what`.
fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Docker containers the fake's kubelet made for pod `ns/pod`.
fn engine_containers(tb: &BTreeMap<String, String>, pod: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=dev.mlcd.fake-kube.pod=ml/{pod}"))
        .env("DOCKER_HOST", &tb["DOCKER_HOST"])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const ORDERED_JOB: &str = r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: ordered}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          terminationGracePeriodSeconds: 5
          volumes: [{name: work, emptyDir: {}}]
          initContainers:
          - name: prepare
            image: BUSYBOX
            command: [sh, -c]
            args: ["echo hello-from-init > /work/greeting; echo init done"]
            volumeMounts: [{name: work, mountPath: /work}]
          - name: keeper
            image: BUSYBOX
            restartPolicy: Always
            command: [sh, -c]
            args:
            - |
              trap 'echo "saw $(cat /work/main-done)" > /dev/termination-log; echo kept > /work/kept; exit 0' TERM
              echo sidecar up
              i=0
              while true; do i=$((i+1)); echo $i > /work/beat; sleep 0.1; done
            volumeMounts: [{name: work, mountPath: /work}]
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c]
            args:
            - |
              for i in $(seq 100); do [ -s /work/beat ] && break; sleep 0.1; done
              a=$(cat /work/beat); sleep 1; b=$(cat /work/beat)
              [ -n "$a" ] && [ "$a" != "$b" ] || { echo "the sidecar is not running" > /dev/termination-log; exit 3; }
              cat /work/greeting
              [ "$API_TOKEN" = s3cr3t ] && echo secret ok
              echo main-done > /work/main-done
              echo "trained on $(cat /work/greeting)" > /dev/termination-log
            env: [{name: API_TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}]
            volumeMounts: [{name: work, mountPath: /work}]
"#;

#[test]
fn a_pytorchjob_pod_runs_init_then_sidecar_and_main_and_stops_the_sidecar_last() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    kubectl_ok(
        &fake,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cr3t",
        ],
    );
    apply(&fake, &tb, ORDERED_JOB);
    wait_for(&fake, "Succeeded", "pytorchjob/ordered");

    let pod = get_json(&fake, &["pod", "ordered-master-0"]);
    assert_eq!(pod["status"]["phase"], "Succeeded", "{:#}", pod["status"]);
    let (prepare, keeper, main) = (
        container(&pod, "prepare"),
        container(&pod, "keeper"),
        container(&pod, "pytorch"),
    );
    let term = |c: &Value| c["state"]["terminated"].clone();
    assert_eq!(term(prepare)["exitCode"], 0, "{prepare:#}");
    assert_eq!(term(prepare)["reason"], "Completed");
    assert_eq!(term(main)["exitCode"], 0, "{main:#}");
    assert_eq!(term(main)["message"], "trained on hello-from-init\n");
    // The sidecar was stopped after the main container had written its file, and
    // wrote what it saw to its termination message on SIGTERM.
    assert_eq!(term(keeper)["message"], "saw main-done\n", "{keeper:#}");
    assert_eq!(term(keeper)["exitCode"], 0);
    let at = |c: &Value, f: &str| term(c)[f].as_str().unwrap().to_string();
    assert!(at(prepare, "finishedAt") <= at(main, "startedAt"));
    assert!(at(keeper, "startedAt") <= at(main, "startedAt"));
    assert!(at(keeper, "finishedAt") >= at(main, "finishedAt"));

    // Logs per container, init containers and sidecars too.
    let logs = |c: &str| kubectl_ok(&fake, &["logs", "ordered-master-0", "-c", c]);
    assert_eq!(logs("prepare"), "init done\n");
    assert_eq!(logs("keeper"), "sidecar up\n");
    assert_eq!(logs("pytorch"), "hello-from-init\nsecret ok\n");
    let tail = |extra: &str| {
        kubectl_ok(
            &fake,
            &[
                "logs",
                "ordered-master-0",
                "-c",
                "pytorch",
                "--tail=1",
                extra,
            ],
        )
    };
    assert_eq!(tail("--timestamps=false"), "secret ok\n");
    let stamped = tail("--timestamps");
    let (stamp, line) = stamped.split_once(' ').unwrap();
    assert_eq!(line, "secret ok\n");
    assert!(
        stamp.len() > 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamped}"
    );

    // What the sidecar wrote on its way out is on the pod's emptyDir.
    let kubelet = fake.get("/_fake/kubelet");
    let work = kubelet["pods"]["ml/ordered-master-0"]["volumes"]["work"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{work}/kept")).unwrap(),
        "kept\n"
    );
    fake.assert_no_violations();
}

#[test]
fn a_failing_main_container_fails_the_pod_and_the_job_with_its_termination_message() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    apply(
        &fake,
        &tb,
        r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: broken}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c]
            args: ["echo training; echo 'bad data: 3 rows without a label' > /opt/ml/output/failure; exit 2"]
            terminationMessagePath: /opt/ml/output/failure
            terminationMessagePolicy: FallbackToLogsOnError
"#,
    );
    wait_for(&fake, "Failed", "pytorchjob/broken");
    let job = get_json(&fake, &["pytorchjob", "broken"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap();
    assert_eq!(failed["reason"], "PyTorchJobFailed", "{failed:#}");
    let pod = get_json(&fake, &["pod", "broken-master-0"]);
    assert_eq!(pod["status"]["phase"], "Failed");
    let term = &container(&pod, "pytorch")["state"]["terminated"];
    assert_eq!(term["exitCode"], 2, "{term:#}");
    assert_eq!(term["reason"], "Error");
    assert_eq!(term["message"], "bad data: 3 rows without a label\n");
    assert_eq!(
        kubectl_ok(&fake, &["logs", "broken-master-0"]),
        "training\n"
    );
    fake.assert_no_violations();
}

#[test]
fn a_failing_init_container_fails_the_pod_and_the_main_container_never_starts() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    apply(
        &fake,
        &tb,
        r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: nofetch}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          volumes: [{name: data, emptyDir: {}}]
          initContainers:
          - name: fetch
            image: BUSYBOX
            command: [sh, -c]
            args: ["echo 'cannot read s3://bucket/train: AccessDenied' >&2; exit 1"]
            terminationMessagePolicy: FallbackToLogsOnError
            volumeMounts: [{name: data, mountPath: /opt/ml/input/data}]
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c, "echo must not run"]
            volumeMounts: [{name: data, mountPath: /opt/ml/input/data}]
"#,
    );
    wait_for(&fake, "Failed", "pytorchjob/nofetch");
    let pod = get_json(&fake, &["pod", "nofetch-master-0"]);
    assert_eq!(pod["status"]["phase"], "Failed");
    let fetch = &container(&pod, "fetch")["state"]["terminated"];
    assert_eq!(fetch["exitCode"], 1, "{fetch:#}");
    assert_eq!(fetch["reason"], "Error");
    // No termination file was written: the log's tail is the message.
    assert_eq!(
        fetch["message"],
        "cannot read s3://bucket/train: AccessDenied\n"
    );
    let main = container(&pod, "pytorch");
    assert_eq!(
        main["state"]["waiting"]["reason"], "PodInitializing",
        "{main:#}"
    );
    let r = fake.kubectl(&["logs", "nofetch-master-0", "-c", "pytorch"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("is waiting to start"), "{}", r.stderr);
    assert_eq!(engine_containers(&tb, "nofetch-master-0").len(), 1);
    fake.assert_no_violations();
}

#[test]
fn a_container_waits_for_a_missing_secret_or_image_and_a_deleted_job_takes_its_containers() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    apply(
        &fake,
        &tb,
        r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: late}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c, "echo key=$KEY; sleep 30"]
            env: [{name: KEY, valueFrom: {secretKeyRef: {name: late-creds, key: key}}}]
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: noimage}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: mlcd-test/not-on-this-engine:1
            imagePullPolicy: Never
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: nosettings}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          volumes: [{name: hp, configMap: {name: absent-settings}}]
          containers:
          - name: pytorch
            image: BUSYBOX
            volumeMounts: [{name: hp, mountPath: /opt/ml/input/config}]
"#,
    );
    let waiting = |pod: &str, reason: &str| {
        eventually(&format!("{pod} waiting with {reason}"), 30, || {
            let p = get_json(&fake, &["pod", pod]);
            let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (w["reason"] == reason).then(|| (p["status"]["phase"].clone(), w))
        })
    };
    let (phase, w) = waiting("late-master-0", "CreateContainerConfigError");
    assert_eq!(phase, "Pending");
    assert_eq!(w["message"], "secret \"late-creds\" not found");
    let (phase, w) = waiting("noimage-master-0", "ErrImageNeverPull");
    assert_eq!(phase, "Pending");
    assert_eq!(
        w["message"],
        "Container image \"mlcd-test/not-on-this-engine:1\" is not present with pull policy of Never"
    );

    // A volume whose ConfigMap is missing: Pending, with the kubelet's Event.
    let (phase, _) = waiting("nosettings-master-0", "ContainerCreating");
    assert_eq!(phase, "Pending");
    let events = get_json(&fake, &["events"]);
    let mount = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["involvedObject"]["name"] == "nosettings-master-0")
        .unwrap_or_else(|| panic!("no Event for the pod: {events:#}"));
    assert_eq!(mount["reason"], "FailedMount");
    assert_eq!(
        mount["message"],
        "MountVolume.SetUp failed for volume \"hp\" : configmap \"absent-settings\" not found"
    );

    // Once the Secret exists (stringData, folded into data) the kubelet starts it.
    apply(
        &fake,
        &tb,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: late-creds}\nstringData: {key: k-123}\n",
    );
    eventually("the container running with the key", 30, || {
        let r = fake.kubectl(&["logs", "late-master-0"]);
        (r.code == 0 && r.stdout == "key=k-123\n").then_some(())
    });
    wait_for(&fake, "Running", "pytorchjob/late");
    assert_eq!(engine_containers(&tb, "late-master-0").len(), 1);

    // Deleting the job deletes its pod, and the pod's container goes.
    kubectl_ok(&fake, &["delete", "pytorchjob", "late"]);
    eventually("the deleted pod's container removed", 30, || {
        engine_containers(&tb, "late-master-0")
            .is_empty()
            .then_some(())
    });
    fake.assert_no_violations();
}

#[test]
fn a_trainjob_runs_each_node_as_a_container_with_its_index_and_the_runtime_patch() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    kubectl_ok(
        &fake,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cr3t",
        ],
    );
    apply(
        &fake,
        &tb,
        r#"
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata: {name: nodes}
spec:
  runtimeRef: {name: torch-distributed}
  trainer:
    image: BUSYBOX
    numNodes: 2
    command: [sh, -c]
    args: ["echo $JOB_COMPLETION_INDEX > /data/mine; echo index=$(cat /data/mine) pod=$POD; [ \"$API_TOKEN\" = s3cr3t ] && echo secret ok"]
    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
  runtimePatches:
  - manager: mlcd.dev/test
    trainingRuntimeSpec:
      template:
        spec:
          replicatedJobs:
          - name: node
            template:
              spec:
                template:
                  spec:
                    volumes: [{name: data, emptyDir: {}}]
                    containers:
                    - name: node
                      env: [{name: API_TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}]
                      volumeMounts: [{name: data, mountPath: /data}]
"#,
    );
    wait_for(&fake, "Complete", "trainjob/nodes");
    let pods = get_json(
        &fake,
        &["pods", "-l", "jobset.sigs.k8s.io/jobset-name=nodes"],
    );
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    let mut seen = Vec::new();
    for p in pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        let index = p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap();
        assert_eq!(p["status"]["phase"], "Succeeded", "{:#}", p["status"]);
        assert_eq!(
            kubectl_ok(&fake, &["logs", name, "-c", "node"]),
            format!("index={index} pod={name}\nsecret ok\n")
        );
        seen.push(index.to_string());
    }
    seen.sort();
    assert_eq!(seen, ["0", "1"]);
    fake.assert_no_violations();
}

#[test]
fn memory_limits_deadlines_and_suspend_act_on_the_real_containers() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    apply(
        &fake,
        &tb,
        r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: hungry}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c]
            args: ['x=$(head -c 100000000 /dev/zero | tr "\0" a); echo survived']
            resources: {limits: {memory: 16Mi, cpu: 500m}}
---
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: slow}
spec:
  runPolicy: {activeDeadlineSeconds: 4}
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sleep, "120"]
---
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata: {name: pausable}
spec:
  runtimeRef: {name: torch-distributed}
  trainer: {image: BUSYBOX, command: [sleep, "120"]}
"#,
    );
    // Over its memory limit, the engine OOM-kills the container.
    wait_for(&fake, "Failed", "pytorchjob/hungry");
    let pod = get_json(&fake, &["pod", "hungry-master-0"]);
    let term = &container(&pod, "pytorch")["state"]["terminated"];
    assert_eq!(term["reason"], "OOMKilled", "{term:#}");
    assert_eq!(term["exitCode"], 137);

    // Suspending a running TrainJob deletes its pod, and the container goes.
    let pod = eventually("the TrainJob's pod running", 30, || {
        let pods = get_json(
            &fake,
            &["pods", "-l", "jobset.sigs.k8s.io/jobset-name=pausable"],
        );
        let p = pods["items"][0].clone();
        (p["status"]["phase"] == "Running")
            .then(|| p["metadata"]["name"].as_str().unwrap().to_string())
    });
    assert_eq!(engine_containers(&tb, &pod).len(), 1);
    kubectl_ok(
        &fake,
        &[
            "patch",
            "trainjob/pausable",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    wait_for(&fake, "Suspended", "trainjob/pausable");
    eventually("the suspended job's container removed", 30, || {
        engine_containers(&tb, &pod).is_empty().then_some(())
    });

    // activeDeadlineSeconds: the job fails with DeadlineExceeded, its container goes.
    wait_for(&fake, "Failed", "pytorchjob/slow");
    let job = get_json(&fake, &["pytorchjob", "slow"]);
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap()
        .clone();
    assert_eq!(failed["reason"], "DeadlineExceeded", "{failed:#}");
    eventually("the timed-out job's container removed", 30, || {
        engine_containers(&tb, "slow-master-0")
            .is_empty()
            .then_some(())
    });
    fake.assert_no_violations();
}

#[test]
fn claims_configmaps_and_secrets_are_mounted_as_the_kubelet_mounts_them() {
    let tb = testbed();
    let fake = FakeKube::with_containers(&tb);
    kubectl_ok(
        &fake,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=lr=0.1",
            "--from-literal=epochs=3",
        ],
    );
    kubectl_ok(
        &fake,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=token=s3cr3t",
        ],
    );
    apply(
        &fake,
        &tb,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: datasets}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    );
    // A test puts data on the claim through the fake's control endpoint.
    let claim = fake.call(
        "POST",
        "/_fake/kubelet",
        Some(r#"{"namespace": "ml", "claim": "datasets"}"#),
    )["path"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(format!("{claim}/train")).unwrap();
    std::fs::write(format!("{claim}/train/data.csv"), "x,y\n1,0\n").unwrap();
    apply(
        &fake,
        &tb,
        r#"
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata: {name: mounts}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          volumes:
          - {name: hp, configMap: {name: settings, items: [{key: lr, path: rates/lr}]}}
          - {name: creds, secret: {secretName: creds}}
          - {name: data, persistentVolumeClaim: {claimName: datasets}}
          containers:
          - name: pytorch
            image: BUSYBOX
            command: [sh, -c]
            args:
            - |
              echo "epochs=$HP_epochs lr=$(cat /opt/ml/input/config/rates/lr) token=$(cat /etc/creds/token)"
              ls /opt/ml/input/config
              cat /opt/ml/input/data/train/data.csv
              touch /opt/ml/input/data/new 2>/dev/null && echo wrote to a read-only mount
              echo trained > /opt/ml/model/model.txt
            envFrom: [{prefix: HP_, configMapRef: {name: settings}}]
            volumeMounts:
            - {name: hp, mountPath: /opt/ml/input/config, readOnly: true}
            - {name: creds, mountPath: /etc/creds, readOnly: true}
            - {name: data, mountPath: /opt/ml/input/data, readOnly: true}
            - {name: data, mountPath: /opt/ml/model, subPath: runs/1}
"#,
    );
    wait_for(&fake, "Succeeded", "pytorchjob/mounts");
    assert_eq!(
        kubectl_ok(&fake, &["logs", "mounts-master-0"]),
        "epochs=3 lr=0.1 token=s3cr3t\nrates\nx,y\n1,0\n"
    );
    // What the container wrote under the claim's subPath is on the claim.
    assert_eq!(
        std::fs::read_to_string(format!("{claim}/runs/1/model.txt")).unwrap(),
        "trained\n"
    );
    fake.assert_no_violations();
}

#[test]
fn what_mlcd_renders_trains_the_example_model_for_real_with_both_trainers() {
    let tb = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_BUSYBOX_IMAGE",
        "MLCD_TESTBED_BASE_IMAGE",
    ]);
    let image = fake_kube::kserve_image(&tb);
    let fake = FakeKube::with_containers(&tb);
    let mut claims = BTreeMap::new();
    for claim in ["data", "models"] {
        apply(
            &fake,
            &tb,
            &format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {claim}}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n"),
        );
        let body = format!(r#"{{"namespace": "ml", "claim": "{claim}"}}"#);
        let path = fake.call("POST", "/_fake/kubelet", Some(&body))["path"]
            .as_str()
            .unwrap()
            .to_string();
        claims.insert(claim, path);
    }
    copy_dir(
        &root().join("fixtures/example/data/train"),
        std::path::Path::new(&format!("{}/churn/train", claims["data"])),
    );
    for (trainer, condition) in [("pytorchjob", "Succeeded"), ("trainjob", "Complete")] {
        let ws = Workspace::new();
        ws.write(
            "mlcd.yml",
            &format!(
                "model: churn
backend: kubernetes
train:
  image: {image}
  instance: gpu.t4.xl
  hyperparameters: {{epochs: 4, lr: 0.1}}
  channels:
    train: pvc://data/churn/train
  timeout: 2m
kubernetes:
  namespace: ml
  storage-uri: pvc://models/churn
  trainer: {trainer}
"
            ),
        );
        let r = mlcd(
            ws.path(),
            &["render", "train", "--config", "mlcd.yml"],
            &[("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")],
        );
        r.assert_code(0);
        let file = ws.write("job.yaml", &r.stdout);
        let job = r
            .stdout
            .split("\n---\n")
            .find(|d| d.contains("\nkind: PyTorchJob") || d.contains("\nkind: TrainJob"))
            .and_then(|d| d.lines().find_map(|l| l.strip_prefix("  name: ")))
            .unwrap_or_else(|| panic!("no job in {}", r.stdout))
            .to_string();
        kubectl_ok(&fake, &["apply", "-f", &file.display().to_string()]);
        wait_for(&fake, condition, &format!("{trainer}/{job}"));
        let logs = kubectl_ok(&fake, &["logs", "-l", &format!("mlcd.dev/job={job}")]);
        assert!(logs.contains("validation_accuracy="), "{logs}");
        // The trained model is on the claim of kubernetes.storage-uri.
        let model = format!("{}/churn/{job}/model/model.json", claims["models"]);
        assert!(
            std::path::Path::new(&model).is_file(),
            "{trainer}: no {model}"
        );
    }
    fake.assert_no_violations();
}
