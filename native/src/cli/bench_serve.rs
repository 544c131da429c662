//! `tessera bench serve`: load-tests a running OpenAI-compatible server like `vllm bench
//! serve`: random token-id prompts sent to `/v1/completions` (streaming, `ignore_eos`) with
//! Poisson arrivals at `--request-rate`; prints request and token throughput and TTFT, ITL
//! and e2e latency percentiles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tessera_core::sample::Rng;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchServeArgs {
    /// The server, e.g. http://127.0.0.1:8000 (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub base_url: String,
    #[arg(long, default_value = "/v1/completions")]
    pub endpoint: String,
    /// Model name to send (default: the first of GET /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub num_prompts: usize,
    /// Requests per second (Poisson arrivals); `inf` sends them all at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: f64,
    /// At most this many requests in flight.
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Prompt length in tokens.
    #[arg(long, alias = "random-input-len", default_value_t = 128)]
    pub input_len: usize,
    /// Tokens generated per request (`ignore_eos`).
    #[arg(long, alias = "random-output-len", default_value_t = 64)]
    pub output_len: usize,
    /// Prompt token ids are drawn from [0, this).
    #[arg(long, default_value_t = 500)]
    pub max_token_id: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "OPENAI_API_KEY")]
    pub api_key: Option<String>,
    /// Also print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// What one request measured.
#[derive(Debug, Default, Clone)]
struct Measured {
    ok: bool,
    error: String,
    ttft: f64,
    itls: Vec<f64>,
    latency: f64,
    output_tokens: usize,
    prompt_tokens: usize,
}

struct Target {
    addr: String,
    host: String,
    prefix: String,
    api_key: Option<String>,
}

fn parse_base_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("--base-url {url:?}: only http:// URLs are supported"))?;
    let (hostport, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if hostport.is_empty() {
        bail!("--base-url {url:?}: no host");
    }
    let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
    let prefix = if path.is_empty() { String::new() } else { format!("/{}", path.trim_end_matches('/')) };
    Ok((hostport, prefix))
}

async fn http(t: &Target, method: &str, path: &str, body: Option<String>, mut on_data: impl FnMut(&[u8])) -> Result<u16> {
    let stream = tokio::net::TcpStream::connect(&t.addr).await.with_context(|| format!("connecting to {}", t.addr))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder().method(method).uri(format!("{}{path}", t.prefix)).header("host", &t.host);
    if let Some(k) = &t.api_key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.header("content-type", "application/json").body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            on_data(d);
        }
    }
    Ok(status)
}

async fn one_request(t: Arc<Target>, endpoint: String, body: String, prompt_tokens: usize) -> Measured {
    let start = Instant::now();
    let mut m = Measured { prompt_tokens, ..Default::default() };
    let mut last: Option<Instant> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut error_body = String::new();
    let status = http(&t, "POST", &endpoint, Some(body), |d| {
        buf.extend_from_slice(d);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let Some(data) = text.trim().strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else { continue };
            if v.get("error").is_some() {
                error_body = data.to_string();
            }
            if let Some(u) = v.get("usage").and_then(|u| u.get("completion_tokens")).and_then(|x| x.as_u64()) {
                m.output_tokens = u as usize;
            }
            let has_text = v["choices"].as_array().is_some_and(|cs| cs.iter().any(|c| c["text"].as_str().is_some_and(|s| !s.is_empty())));
            if has_text {
                let now = Instant::now();
                match last {
                    None => m.ttft = now.duration_since(start).as_secs_f64(),
                    Some(l) => m.itls.push(now.duration_since(l).as_secs_f64()),
                }
                last = Some(now);
            }
        }
        if buf.len() > 1 << 20 {
            error_body = String::from_utf8_lossy(&buf[..200]).into_owned();
            buf.clear();
        }
    })
    .await;
    m.latency = start.elapsed().as_secs_f64();
    match status {
        Ok(200) if error_body.is_empty() => m.ok = true,
        Ok(s) => m.error = format!("HTTP {s} {error_body}{}", String::from_utf8_lossy(&buf)),
        Err(e) => m.error = format!("{e:#}"),
    }
    m
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Linear interpolation, as numpy.percentile (vLLM's benchmark uses it).
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn stats(mut v: Vec<f64>) -> [f64; 5] {
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    [mean, percentile(&v, 50.0), percentile(&v, 90.0), percentile(&v, 99.0), v.last().copied().unwrap_or(0.0)]
}

async fn first_model(t: &Target) -> Result<String> {
    let mut body = Vec::new();
    let status = http(t, "GET", "/v1/models", None, |d| body.extend_from_slice(d)).await?;
    if status != 200 {
        bail!("GET /v1/models: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["data"][0]["id"].as_str().map(str::to_string).context("GET /v1/models listed no model")
}

pub fn run(args: BenchServeArgs) -> Result<()> {
    if args.num_prompts == 0 || args.input_len == 0 || args.output_len == 0 || args.max_token_id == 0 {
        bail!("--num-prompts, --input-len, --output-len and --max-token-id must be at least 1");
    }
    if args.request_rate.is_nan() || args.request_rate <= 0.0 {
        bail!("--request-rate must be > 0 (or inf), got {}", args.request_rate);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: BenchServeArgs) -> Result<()> {
    let (addr, prefix) = parse_base_url(&args.base_url)?;
    let t = Arc::new(Target { host: addr.clone(), addr, prefix, api_key: args.api_key.clone() });
    let model = match &args.model {
        Some(m) => m.clone(),
        None => first_model(&t).await?,
    };
    let mut rng = Rng::new(args.seed);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.max_concurrency.unwrap_or(usize::MAX >> 4).max(1)));
    eprintln!(
        "bench serve: {} prompts of {} tokens -> {} tokens, request rate {}, model {model}",
        args.num_prompts, args.input_len, args.output_len, args.request_rate
    );
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.num_prompts);
    for i in 0..args.num_prompts {
        if i > 0 && args.request_rate.is_finite() {
            // Exponential inter-arrival times = Poisson arrivals.
            let gap = -(1.0 - rng.next_f64()).ln() / args.request_rate;
            tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        }
        let prompt: Vec<u32> = (0..args.input_len).map(|_| (rng.next_u64() % args.max_token_id as u64) as u32).collect();
        let body = serde_json::json!({
            "model": model, "prompt": prompt, "max_tokens": args.output_len, "ignore_eos": true,
            "temperature": 0.0, "stream": true, "stream_options": {"include_usage": true},
        })
        .to_string();
        let permit = limit.clone().acquire_owned().await?;
        let (t, endpoint, n) = (t.clone(), args.endpoint.clone(), args.input_len);
        tasks.push(tokio::spawn(async move {
            let m = one_request(t, endpoint, body, n).await;
            drop(permit);
            m
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    let duration = start.elapsed().as_secs_f64();
    report(&args, &results, duration);
    if results.iter().all(|r| !r.ok) {
        bail!("every request failed; first error: {}", results[0].error);
    }
    Ok(())
}

fn report(args: &BenchServeArgs, results: &[Measured], duration: f64) {
    let ok: Vec<&Measured> = results.iter().filter(|r| r.ok).collect();
    for r in results.iter().filter(|r| !r.ok).take(3) {
        eprintln!("failed request: {}", r.error);
    }
    let input: usize = ok.iter().map(|r| r.prompt_tokens).sum();
    let output: usize = ok.iter().map(|r| r.output_tokens).sum();
    let ttft = stats(ok.iter().map(|r| r.ttft * 1e3).collect());
    let itl = stats(ok.iter().flat_map(|r| r.itls.iter().map(|x| x * 1e3)).collect());
    let tpot = stats(ok.iter().filter(|r| r.output_tokens > 1).map(|r| (r.latency - r.ttft) * 1e3 / (r.output_tokens - 1) as f64).collect());
    let e2e = stats(ok.iter().map(|r| r.latency * 1e3).collect());
    let line = |k: &str, v: String| println!("{k:<40}{v:>10}");
    println!("{:=^50}", " Serving Benchmark Result ");
    line("Successful requests:", ok.len().to_string());
    line("Failed requests:", (results.len() - ok.len()).to_string());
    line("Benchmark duration (s):", format!("{duration:.2}"));
    line("Total input tokens:", input.to_string());
    line("Total generated tokens:", output.to_string());
    line("Request throughput (req/s):", format!("{:.2}", ok.len() as f64 / duration));
    line("Output token throughput (tok/s):", format!("{:.2}", output as f64 / duration));
    line("Total token throughput (tok/s):", format!("{:.2}", (input + output) as f64 / duration));
    for (title, name, s) in [("Time to First Token", "TTFT", ttft), ("Time per Output Token (excl. 1st token)", "TPOT", tpot), ("Inter-token Latency", "ITL", itl), ("End-to-end Latency", "E2EL", e2e)] {
        println!("{:-^50}", format!(" {title} "));
        line(&format!("Mean {name} (ms):"), format!("{:.2}", s[0]));
        line(&format!("Median {name} (ms):"), format!("{:.2}", s[1]));
        line(&format!("P90 {name} (ms):"), format!("{:.2}", s[2]));
        line(&format!("P99 {name} (ms):"), format!("{:.2}", s[3]));
    }
    println!("{:=^50}", "");
    if args.json {
        let j = serde_json::json!({
            "completed": ok.len(), "failed": results.len() - ok.len(), "duration": duration,
            "total_input_tokens": input, "total_output_tokens": output,
            "request_throughput": ok.len() as f64 / duration, "output_throughput": output as f64 / duration,
            "mean_ttft_ms": ttft[0], "median_ttft_ms": ttft[1], "p90_ttft_ms": ttft[2], "p99_ttft_ms": ttft[3],
            "mean_itl_ms": itl[0], "median_itl_ms": itl[1], "p90_itl_ms": itl[2], "p99_itl_ms": itl[3],
            "mean_e2el_ms": e2e[0], "median_e2el_ms": e2e[1], "p90_e2el_ms": e2e[2], "p99_e2el_ms": e2e[3],
        });
        println!("{j}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn base_urls() {
        assert_eq!(parse_base_url("http://127.0.0.1:8000").unwrap(), ("127.0.0.1:8000".into(), "".into()));
        assert_eq!(parse_base_url("http://localhost/api/").unwrap(), ("localhost:80".into(), "/api".into()));
        assert!(parse_base_url("https://x").is_err());
    }
}
