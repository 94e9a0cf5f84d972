//! The SageMaker live guards' numbers: each endpoint variant's live traffic
//! over a bake interval from CloudWatch `GetMetricData` (namespace
//! `AWS/SageMaker`, dimensions `EndpointName` + `VariantName`): `Invocations`
//! and `Invocation5XXErrors` as `Sum`, and `ModelLatency` (microseconds) as the
//! `p95` extended statistic in a second request — CloudWatch computes
//! percentiles; an emulator that cannot (moto answers it with HTTP 500) leaves
//! the p95 unmeasured, with a warning, and the error-rate guard still applies.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::stats::VersionStats;
use crate::cloud::aws::{AwsClient, JSON_1_0};
use crate::error::UserError;

const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
const NAMESPACE: &str = "AWS/SageMaker";

/// One metric query per variant: `{prefix}{i}` for the i-th variant.
fn queries(
    endpoint: &str,
    variants: &[String],
    metric: &str,
    stat: &str,
    period: u64,
    prefix: &str,
) -> Vec<Value> {
    variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "Id": format!("{prefix}{i}"),
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": metric,
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": endpoint},
                            {"Name": "VariantName", "Value": v},
                        ],
                    },
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": true,
            })
        })
        .collect()
}

/// The period covering `from..to` in one data point: whole minutes, at least one.
pub fn period(from: SystemTime, to: SystemTime) -> u64 {
    let secs = to.duration_since(from).unwrap_or_default().as_secs();
    secs.div_ceil(60).max(1) * 60
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Values of each query id in a GetMetricData answer (all pages' values of an id
/// together).
fn values(answer: &Value) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in answer["MetricDataResults"].as_array().into_iter().flatten() {
        let id = r["Id"].as_str().unwrap_or_default().to_string();
        let vals = r["Values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64);
        out.entry(id).or_default().extend(vals);
    }
    out
}

/// Calls GetMetricData until its answer has no `NextToken`.
async fn get(
    client: &AwsClient,
    url: &str,
    queries: Vec<Value>,
    from: SystemTime,
    to: SystemTime,
) -> Result<BTreeMap<String, Vec<f64>>, UserError> {
    let mut all: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut token: Option<String> = None;
    for _ in 0..20 {
        let mut body = json!({
            "MetricDataQueries": queries,
            "StartTime": epoch(from).floor(),
            "EndTime": epoch(to).ceil(),
            "ScanBy": "TimestampAscending",
        });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let answer = client
            .json_call_as(JSON_1_0, "monitoring", url, TARGET, &body)
            .await
            .map_err(|e| {
                UserError::from(e).hint("the live guards read the variants' CloudWatch metrics: the credentials need cloudwatch:GetMetricData")
            })?;
        for (k, v) in values(&answer) {
            all.entry(k).or_default().extend(v);
        }
        token = answer["NextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(all)
}

/// Each variant's requests, 5xx answers and p95 model latency between `from`
/// and `to`. The p95 is `None` when CloudWatch has no latency data point or
/// does not answer the percentile (then `p95_error` says why).
pub async fn variant_stats(
    client: &AwsClient,
    url: &str,
    endpoint: &str,
    variants: &[String],
    from: SystemTime,
    to: SystemTime,
) -> Result<(BTreeMap<String, VersionStats>, Option<String>), UserError> {
    let period = period(from, to);
    let mut q = queries(endpoint, variants, "Invocations", "Sum", period, "inv");
    q.extend(queries(
        endpoint,
        variants,
        "Invocation5XXErrors",
        "Sum",
        period,
        "err",
    ));
    let counts = get(client, url, q, from, to).await?;
    let latency_q = queries(endpoint, variants, "ModelLatency", "p95", period, "lat");
    let (latency, p95_error) = match get(client, url, latency_q, from, to).await {
        Ok(l) => (l, None),
        Err(e) => (BTreeMap::new(), Some(e.message)),
    };
    let sum = |id: String| -> f64 { counts.get(&id).map_or(0.0, |v| v.iter().sum()) };
    let mut out = BTreeMap::new();
    for (i, v) in variants.iter().enumerate() {
        let requests = sum(format!("inv{i}")).round().max(0.0) as u64;
        let errors = sum(format!("err{i}")).round().max(0.0) as u64;
        // With one period over the window there is one p95; with several (a
        // window CloudWatch split), the largest is the conservative reading.
        let p95 = latency
            .get(&format!("lat{i}"))
            .and_then(|v| v.iter().copied().filter(|x| x.is_finite()).reduce(f64::max))
            .map(|us| Duration::from_secs_f64(us.max(0.0) / 1e6));
        out.insert(
            v.clone(),
            VersionStats {
                requests,
                errors,
                p95,
            },
        );
    }
    Ok((out, p95_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_period_covers_the_whole_window_in_whole_minutes() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(period(t, t + Duration::from_secs(5)), 60);
        assert_eq!(period(t, t + Duration::from_secs(60)), 60);
        assert_eq!(period(t, t + Duration::from_secs(301)), 360);
    }

    #[test]
    fn values_of_each_query_are_gathered() {
        let a = json!({"MetricDataResults": [
            {"Id": "inv0", "Values": [3.0, 4.0]},
            {"Id": "err0", "Values": []},
        ]});
        let v = values(&a);
        assert_eq!(v["inv0"], vec![3.0, 4.0]);
        assert!(v["err0"].is_empty());
    }
}
