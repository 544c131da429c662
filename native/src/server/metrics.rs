//! Prometheus metrics under vLLM's names, in the Prometheus text format (hand-written:
//! a handful of gauges, counters and histograms do not need a metrics framework).
//!
//! The engine thread writes (stats after each step, token counts, latencies); `GET /metrics`
//! reads. Gauges and counters are atomics; histograms sit behind a mutex each.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use super::engine::EngineStats;

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0,
    2560.0,
];
const ITL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// All server metrics.
#[derive(Debug)]
pub struct Metrics {
    model_name: OnceLock<String>,
    running: AtomicU64,
    waiting: AtomicU64,
    kv_usage_bits: AtomicU64,
    preemptions: AtomicU64,
    prefix_queries: AtomicU64,
    prefix_hits: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    success: Mutex<BTreeMap<&'static str, u64>>,
    ttft: Mutex<Histogram>,
    itl: Mutex<Histogram>,
    e2e: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            model_name: OnceLock::new(),
            running: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            kv_usage_bits: AtomicU64::new(0f64.to_bits()),
            preemptions: AtomicU64::new(0),
            prefix_queries: AtomicU64::new(0),
            prefix_hits: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            success: Mutex::new(BTreeMap::new()),
            ttft: Mutex::new(Histogram::new(TTFT_BUCKETS)),
            itl: Mutex::new(Histogram::new(ITL_BUCKETS)),
            e2e: Mutex::new(Histogram::new(E2E_BUCKETS)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// The `model_name` label (set once the model is known).
    pub fn set_model_name(&self, name: &str) {
        let _ = self.model_name.set(name.to_string());
    }

    /// Engine gauges and counters after a step (`live`: requests the server tracks, for
    /// the debug log).
    pub fn publish(&self, s: &EngineStats, live: usize) {
        tracing::trace!(live, running = s.num_running, waiting = s.num_waiting, "engine stats");
        self.running.store(s.num_running as u64, Relaxed);
        self.waiting.store(s.num_waiting as u64, Relaxed);
        self.kv_usage_bits.store(s.kv_cache_usage.clamp(0.0, 1.0).to_bits(), Relaxed);
        self.preemptions.store(s.num_preemptions_total, Relaxed);
        self.prefix_queries.store(s.prefix_cache_queries_total, Relaxed);
        self.prefix_hits.store(s.prefix_cache_hits_total, Relaxed);
    }

    pub fn on_request_added(&self, prompt_tokens: usize) {
        self.prompt_tokens.fetch_add(prompt_tokens as u64, Relaxed);
    }

    pub fn on_tokens(&self, n: usize) {
        self.generation_tokens.fetch_add(n as u64, Relaxed);
    }

    pub fn observe_ttft(&self, secs: f64) {
        lock(&self.ttft).observe(secs);
    }

    pub fn observe_itl(&self, secs: f64) {
        lock(&self.itl).observe(secs);
    }

    /// A request ended (`stop`, `length` or `abort`); e2e latency for completed ones.
    pub fn on_request_finished(&self, reason: &'static str, e2e_secs: Option<f64>) {
        *lock(&self.success).entry(reason).or_insert(0) += 1;
        if let Some(s) = e2e_secs {
            lock(&self.e2e).observe(s);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let model = self.model_name.get().map(String::as_str).unwrap_or("");
        let label = format!("model_name=\"{}\"", model.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}}} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name}_total {help}\n# TYPE {name}_total counter\n{name}_total{{{label}}} {v}");
        };
        gauge(&mut out, "vllm:num_requests_running", "Number of requests in model execution batches.", self.running.load(Relaxed) as f64);
        gauge(&mut out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting.load(Relaxed) as f64);
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            f64::from_bits(self.kv_usage_bits.load(Relaxed)),
        );
        counter(&mut out, "vllm:num_preemptions", "Cumulative number of preemptions from the engine.", self.preemptions.load(Relaxed));
        counter(&mut out, "vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens.load(Relaxed));
        counter(&mut out, "vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens.load(Relaxed));
        counter(
            &mut out,
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            self.prefix_queries.load(Relaxed),
        );
        counter(
            &mut out,
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            self.prefix_hits.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP vllm:request_success_total Count of successfully processed requests.");
        let _ = writeln!(out, "# TYPE vllm:request_success_total counter");
        let success = lock(&self.success).clone();
        for reason in ["stop", "length", "abort"] {
            let n = success.get(reason).copied().unwrap_or(0);
            let _ = writeln!(out, "vllm:request_success_total{{{label},finished_reason=\"{reason}\"}} {n}");
        }
        let hist = |out: &mut String, name: &str, help: &str, h: &Mutex<Histogram>| {
            let h = lock(h);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (b, c) in h.bounds.iter().zip(&h.counts) {
                let _ = writeln!(out, "{name}_bucket{{{label},le=\"{b:?}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{label}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{label}}} {}", h.count);
        };
        hist(&mut out, "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", &self.ttft);
        hist(&mut out, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", &self.itl);
        hist(&mut out, "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", &self.e2e);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vllm_names() {
        let m = Metrics::default();
        m.set_model_name("tiny");
        m.publish(&EngineStats { num_running: 2, num_waiting: 5, kv_cache_usage: 0.25, ..Default::default() }, 4);
        m.on_request_added(7);
        m.on_tokens(3);
        m.observe_ttft(0.03);
        m.on_request_finished("stop", Some(0.4));
        let t = m.render();
        for line in [
            "vllm:num_requests_running{model_name=\"tiny\"} 2",
            "vllm:num_requests_waiting{model_name=\"tiny\"} 5",
            "vllm:kv_cache_usage_perc{model_name=\"tiny\"} 0.25",
            "vllm:prompt_tokens_total{model_name=\"tiny\"} 7",
            "vllm:generation_tokens_total{model_name=\"tiny\"} 3",
            "vllm:time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.04\"} 1",
            "vllm:time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"0.02\"} 0",
            "vllm:e2e_request_latency_seconds_count{model_name=\"tiny\"} 1",
            "vllm:request_success_total{model_name=\"tiny\",finished_reason=\"stop\"} 1",
            "vllm:num_preemptions_total{model_name=\"tiny\"} 0",
            "vllm:prefix_cache_hits_total{model_name=\"tiny\"} 0",
            "vllm:prefix_cache_queries_total{model_name=\"tiny\"} 0",
            "vllm:inter_token_latency_seconds_count{model_name=\"tiny\"} 0",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }
}
