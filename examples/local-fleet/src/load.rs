//! Open-loop client load through the gateway (requests start on schedule whatever the latency,
//! so a slow phase does not hide failures), one [`Sample`] per request, and the figures computed
//! from samples: shares per cluster, failover time, failed requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_local_gateway::ATTEMPT_COUNT_HEADER;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use crate::control::DECISION_HEADER;
use crate::member::MEMBER_HEADER;

/// The outcome of one client request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, since the load's start.
    pub sent: Duration,
    pub latency: Duration,
    /// The status, or `None` if the client saw a transport error or its timeout.
    pub status: Option<u16>,
    /// The cluster the plugin chose (`cluster=` of the decision header).
    pub decided: Option<String>,
    /// The member that answered.
    pub served: Option<String>,
    /// Gateway attempts (1 = no retry).
    pub attempts: u32,
}

impl Sample {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub rate: u32,
    pub duration: Duration,
    pub method: Method,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Client-side timeout of one request.
    pub timeout: Duration,
}

impl LoadSpec {
    /// GET `http://shop.example.com/` at `rate` per second for `duration`.
    pub fn get(rate: u32, duration: Duration) -> Self {
        LoadSpec {
            rate,
            duration,
            method: Method::GET,
            authority: "shop.example.com".to_owned(),
            path: "/".to_owned(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The same load with another method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The same load with an extra request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// An HTTP client to the gateway.
pub type GatewayClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled client with `TCP_NODELAY`.
pub fn client() -> GatewayClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(512)
        .build(connector)
}

/// `n` GETs one after another through the gateway at `gateway` (tests that probe routing).
pub async fn sequential_gets(gateway: SocketAddr, n: usize) -> Vec<Sample> {
    let client = client();
    let spec = LoadSpec::get(1, Duration::ZERO);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(send_one(&client, gateway, &spec, Instant::now()).await);
    }
    out
}

/// How many of `samples` `member` answered.
pub fn served_by(samples: &[Sample], member: &str) -> usize {
    let served = samples
        .iter()
        .filter(|s| s.served.as_deref() == Some(member));
    served.count()
}

/// Sends one request and records it (`sent` relative to `origin`).
pub async fn send_one(
    client: &GatewayClient,
    gateway: SocketAddr,
    spec: &LoadSpec,
    origin: Instant,
) -> Sample {
    let started = Instant::now();
    let mut builder = Request::builder()
        .method(spec.method.clone())
        .uri(format!("http://{gateway}{}", spec.path))
        .header(http::header::HOST, &spec.authority);
    for (name, value) in &spec.headers {
        builder = builder.header(name, value);
    }
    let body = if spec.method == Method::POST {
        Bytes::from_static(b"{\"order\":42}")
    } else {
        Bytes::new()
    };
    let mut sample = Sample {
        sent: started.duration_since(origin),
        latency: Duration::ZERO,
        status: None,
        decided: None,
        served: None,
        attempts: 0,
    };
    let Ok(request) = builder.body(Full::new(body)) else {
        return sample;
    };
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let (parts, body) = response.into_parts();
        body.collect().await.ok()?;
        Some(parts)
    };
    if let Ok(Some(parts)) = tokio::time::timeout(spec.timeout, exchange).await {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        sample.status = Some(parts.status.as_u16());
        sample.decided = header(DECISION_HEADER).and_then(|d| decided_cluster(&d));
        sample.served = header(MEMBER_HEADER);
        sample.attempts = header(ATTEMPT_COUNT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
    }
    sample.latency = started.elapsed();
    sample
}

/// The `cluster=` of a decision header value.
pub fn decided_cluster(decision: &str) -> Option<String> {
    decision
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("cluster="))
        .map(str::to_owned)
        .next()
}

/// Runs `spec` open-loop against `gateway`, streaming each sample to `out` as it completes.
/// Answers once every request has completed or timed out.
pub async fn run(
    gateway: SocketAddr,
    spec: LoadSpec,
    origin: Instant,
    out: mpsc::UnboundedSender<Sample>,
) {
    let client = client();
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
    let total = (spec.duration.as_secs_f64() * f64::from(spec.rate)).round() as u64;
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let spec = std::sync::Arc::new(spec);
    for _ in 0..total {
        interval.tick().await;
        let client = client.clone();
        let spec = std::sync::Arc::clone(&spec);
        let out = out.clone();
        tasks.spawn(async move {
            let sample = send_one(&client, gateway, &spec, origin).await;
            let _ = out.send(sample);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// Counts over a set of samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    pub retried: u64,
    /// Answers per serving member.
    pub served: BTreeMap<String, u64>,
}

impl Tally {
    /// Counts `samples`.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Tally {
        let mut tally = Tally::default();
        for sample in samples {
            tally.total += 1;
            if sample.ok() {
                tally.ok += 1;
            } else {
                tally.failed += 1;
            }
            if sample.attempts > 1 {
                tally.retried += 1;
            }
            if let Some(member) = &sample.served {
                *tally.served.entry(member.clone()).or_default() += 1;
            }
        }
        tally
    }

    /// The share of answers `member` served, in percent of all requests.
    pub fn share(&self, member: &str) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        100.0 * self.served.get(member).copied().unwrap_or(0) as f64 / self.total as f64
    }
}

/// Consecutive requests a failover share is judged over (at 200 req/s: half a second).
pub const FAILOVER_WINDOW: usize = 100;

fn sent_in(samples: &[Sample], at: Duration, until: Duration) -> Vec<&Sample> {
    let mut window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= at && s.sent < until)
        .collect();
    window.sort_by_key(|s| s.sent);
    window
}

fn sent_to(sample: &Sample, dead: &str) -> bool {
    // A request without a decision (a local reply, a transport error) counts against.
    sample.decided.as_deref().is_none_or(|d| d == dead)
}

/// Starts `spec` against the gateway at `addr`; the samples come back when the load is done.
pub fn spawn_collect(
    addr: SocketAddr,
    spec: LoadSpec,
    origin: Instant,
) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let load = tokio::spawn(run(addr, spec, origin, tx));
        let mut samples = Vec::new();
        while let Some(sample) = rx.recv().await {
            samples.push(sample);
        }
        let _ = load.await;
        samples
    })
}

/// Failover time after `dead` stopped at `at`: the delay after which every run of
/// [`FAILOVER_WINDOW`] consecutive requests (sent before `until`) had at least 99% sent by the
/// plugin to a cluster other than `dead` (by the decision header). `None` if never reached.
pub fn failover_time(
    samples: &[Sample],
    dead: &str,
    at: Duration,
    until: Duration,
) -> Option<Duration> {
    let sent = sent_in(samples, at, until);
    if sent.len() < FAILOVER_WINDOW {
        return None;
    }
    let allowed = FAILOVER_WINDOW / 100;
    let mut bad_in_window = sent[..FAILOVER_WINDOW]
        .iter()
        .filter(|s| sent_to(s, dead))
        .count();
    let mut last_bad_window = None;
    for start in 0..=sent.len() - FAILOVER_WINDOW {
        if start > 0 {
            bad_in_window -= usize::from(sent_to(sent[start - 1], dead));
            bad_in_window += usize::from(sent_to(sent[start + FAILOVER_WINDOW - 1], dead));
        }
        if bad_in_window > allowed {
            last_bad_window = Some(start);
        }
    }
    match last_bad_window {
        None => Some(Duration::ZERO),
        Some(start) if start + FAILOVER_WINDOW < sent.len() => Some(sent[start + 1].sent - at),
        Some(_) => None,
    }
}

/// When the last request sent in `[at, until)` went to `dead` (time to 100% on survivors).
pub fn last_sent_to(
    samples: &[Sample],
    dead: &str,
    at: Duration,
    until: Duration,
) -> Option<Duration> {
    sent_in(samples, at, until)
        .into_iter()
        .filter(|s| sent_to(s, dead))
        .map(|s| s.sent - at)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, decided: &str) -> Sample {
        Sample {
            sent: Duration::from_millis(ms),
            latency: Duration::ZERO,
            status: Some(200),
            decided: Some(decided.to_owned()),
            served: Some(decided.to_owned()),
            attempts: 1,
        }
    }

    #[test]
    fn failover_time_is_where_every_later_window_has_at_most_one_percent_on_the_dead_member() {
        // 1 ms apart: ten to the dead member in the first 50 ms (one in five), then two
        // stragglers at 300 and 700 ms, which a 100-request window tolerates (1%).
        let samples: Vec<Sample> = (0..1000u64)
            .map(|i| {
                let dead = (i < 50 && i % 5 == 0) || i == 300 || i == 700;
                sample(1000 + i, if dead { "a" } else { "b" })
            })
            .collect();
        let at = Duration::from_millis(1000);
        let t = failover_time(&samples, "a", at, Duration::from_secs(10));
        // The last window with two dead requests is the one starting at 40 ms (40 and 45).
        assert_eq!(t, Some(Duration::from_millis(41)));
        assert_eq!(
            last_sent_to(&samples, "a", at, Duration::from_secs(10)),
            Some(Duration::from_millis(700))
        );
    }

    #[test]
    fn decided_cluster_reads_the_decision_header() {
        assert_eq!(
            decided_cluster("cluster=hz-b; reason=weight; route=default/shop").as_deref(),
            Some("hz-b")
        );
        assert_eq!(decided_cluster("reason=x"), None);
    }
}
