//! The engine thread and its plumbing: the engine runs on its own `std::thread`; HTTP
//! handlers talk to it through channels only.
//!
//! ```text
//!  handler ──Command::Add{request, events tx}──>  ┌──────────── engine thread ────────────┐
//!  handler ──Command::Abort(id)───────────────>   │ drain commands (block when idle)      │
//!                                                 │ core.step() -> Vec<RequestUpdate>     │
//!  RequestHandle <──Event::{Accepted,Update,Error}│ route each update to its request's tx │
//!  (drop before the end = Command::Abort)         │ record TTFT/ITL/e2e, publish stats    │
//!                                                 └───────────────────────────────────────┘
//! ```
//!
//! A request's events channel closing (its handler or SSE stream dropped: the client went
//! away) aborts the request at the engine at once, which frees its KV blocks.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc as tmpsc;

use super::error::ApiError;
use super::metrics::Metrics;
use super::params::SamplingConfig;
use super::protocol::StopReason;

/// A request as the engine receives it: tokenized and validated.
#[derive(Clone, Debug)]
pub struct EngineRequest {
    pub request_id: String,
    pub prompt_token_ids: Vec<u32>,
    pub params: SamplingConfig,
    /// Tokens to generate, already checked against `max_model_len`.
    pub max_tokens: usize,
}

/// Why a sequence finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    Abort,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Abort => "abort",
        }
    }
}

/// Logprobs of one generated token: the chosen token's and the top alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub token_id: u32,
    pub logprob: f32,
    /// The `k` most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// What one sequence (choice) of a request produced since the last update.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqDelta {
    pub index: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub logprobs: Vec<TokenLogprobs>,
    pub finish_reason: Option<Finish>,
    pub stop_reason: Option<StopReason>,
}

/// One step's output for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestUpdate {
    pub request_id: String,
    pub deltas: Vec<SeqDelta>,
    /// Every sequence of the request has finished.
    pub finished: bool,
}

/// Engine counters for `/metrics`, read after every step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    pub num_running: usize,
    pub num_waiting: usize,
    /// Fraction of KV blocks in use, 0..=1.
    pub kv_cache_usage: f64,
    pub num_preemptions_total: u64,
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
}

/// What the server needs from an engine. The continuous-batching engine implements it
/// through an adapter; tests use a scripted one.
pub trait EngineCore {
    /// Queues a request; an error is the client's (e.g. a prompt that can never fit).
    fn add_request(&mut self, req: EngineRequest) -> Result<(), ApiError>;
    /// Runs one step and returns the requests that made progress.
    fn step(&mut self) -> Result<Vec<RequestUpdate>, String>;
    /// Aborts a request and frees everything it holds; unknown ids are ignored.
    fn abort(&mut self, request_id: &str);
    fn has_unfinished(&self) -> bool;
    fn stats(&self) -> EngineStats;
}

/// Events delivered to one request's handler.
#[derive(Debug)]
pub enum Event {
    /// The engine queued the request.
    Accepted,
    Update(RequestUpdate),
    Error(ApiError),
}

enum Command {
    Add { req: Box<EngineRequest>, events: tmpsc::UnboundedSender<Event> },
    Abort(String),
    /// Abort everything and stop the thread.
    Shutdown,
}

/// The handlers' side of the command channel (cheap to clone).
#[derive(Clone)]
pub struct EngineClient {
    tx: mpsc::Sender<Command>,
}

impl EngineClient {
    /// Sends a request to the engine; its events arrive on the returned handle.
    pub fn submit(&self, req: EngineRequest) -> Result<RequestHandle, ApiError> {
        let (events, rx) = tmpsc::unbounded_channel();
        let id = req.request_id.clone();
        self.tx
            .send(Command::Add { req: Box::new(req), events })
            .map_err(|_| ApiError::Unavailable("the engine has stopped (the server is shutting down)".into()))?;
        Ok(RequestHandle { id, rx, client: self.clone(), done: false })
    }

    /// Asks the engine thread to abort everything and exit.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// One request in flight. Dropping it before the request finished aborts it.
pub struct RequestHandle {
    id: String,
    rx: tmpsc::UnboundedReceiver<Event>,
    client: EngineClient,
    done: bool,
}

impl RequestHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event; `None` once the engine dropped the request (shutdown).
    pub async fn next(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        match &ev {
            Some(Event::Update(u)) if u.finished => self.done = true,
            Some(Event::Error(_)) | None => self.done = true,
            _ => {}
        }
        ev
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        if !self.done {
            tracing::debug!(request_id = %self.id, "request dropped before it finished: aborting");
            let _ = self.client.tx.send(Command::Abort(self.id.clone()));
        }
    }
}

/// Per-request bookkeeping on the engine thread (for latency metrics).
struct Live {
    events: tmpsc::UnboundedSender<Event>,
    arrival: Instant,
    last_token: Option<Instant>,
}

/// Starts the engine thread. `init` runs on that thread (it loads the model and builds the
/// engine, which therefore never crosses threads); on success `on_ready` is called with
/// its second value before the loop starts, on failure `on_error`.
pub fn spawn<E, R, I>(
    init: I,
    metrics: Arc<Metrics>,
    on_ready: impl FnOnce(R) + Send + 'static,
    on_error: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<(EngineClient, std::thread::JoinHandle<()>)>
where
    E: EngineCore,
    I: FnOnce() -> Result<(E, R), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let join = std::thread::Builder::new().name("tessera-engine".into()).spawn(move || match init() {
        Ok((mut core, ready)) => {
            on_ready(ready);
            run_loop(&mut core, &rx, &metrics);
            tracing::info!("engine thread stopped");
        }
        Err(e) => {
            on_error(e);
            // Answer whatever is queued so no handler waits forever.
            while let Ok(cmd) = rx.recv() {
                match cmd {
                    Command::Add { events, .. } => {
                        let _ = events.send(Event::Error(ApiError::Unavailable("the model failed to load".into())));
                    }
                    Command::Shutdown => break,
                    Command::Abort(_) => {}
                }
            }
        }
    })?;
    Ok((EngineClient { tx }, join))
}

/// The engine loop: commands first, then one step; blocks while there is nothing to do.
fn run_loop(core: &mut dyn EngineCore, rx: &mpsc::Receiver<Command>, metrics: &Metrics) {
    let mut live: HashMap<String, Live> = HashMap::new();
    loop {
        if !core.has_unfinished() {
            metrics.publish(&core.stats(), live.len());
            match rx.recv() {
                Ok(cmd) => {
                    if !handle(core, cmd, &mut live, metrics) {
                        return;
                    }
                }
                Err(_) => return abort_all(core, &mut live),
            }
        }
        loop {
            match rx.try_recv() {
                Ok(cmd) => {
                    if !handle(core, cmd, &mut live, metrics) {
                        return;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return abort_all(core, &mut live),
            }
        }
        if !core.has_unfinished() {
            continue;
        }
        match core.step() {
            Ok(updates) => {
                let now = Instant::now();
                for u in updates {
                    route(core, u, now, &mut live, metrics);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "engine step failed; aborting the requests in flight");
                for (id, l) in live.drain() {
                    core.abort(&id);
                    let _ = l.events.send(Event::Error(ApiError::Internal(format!("engine step failed: {e}"))));
                }
            }
        }
        metrics.publish(&core.stats(), live.len());
    }
}

/// Handles one command; false = shut down.
fn handle(core: &mut dyn EngineCore, cmd: Command, live: &mut HashMap<String, Live>, metrics: &Metrics) -> bool {
    match cmd {
        Command::Add { req, events } => {
            let id = req.request_id.clone();
            if live.contains_key(&id) {
                let _ = events.send(Event::Error(ApiError::bad(format!("request id {id:?} is already in use"))));
                return true;
            }
            let prompt_len = req.prompt_token_ids.len();
            match core.add_request(*req) {
                Ok(()) => {
                    metrics.on_request_added(prompt_len);
                    if events.send(Event::Accepted).is_ok() {
                        live.insert(id, Live { events, arrival: Instant::now(), last_token: None });
                    } else {
                        core.abort(&id);
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::Error(e));
                }
            }
            true
        }
        Command::Abort(id) => {
            if live.remove(&id).is_some() {
                tracing::debug!(request_id = %id, "aborting");
                core.abort(&id);
                metrics.on_request_finished("abort", None);
            }
            true
        }
        Command::Shutdown => {
            abort_all(core, live);
            false
        }
    }
}

fn abort_all(core: &mut dyn EngineCore, live: &mut HashMap<String, Live>) {
    for (id, _) in live.drain() {
        core.abort(&id);
    }
}

fn route(core: &mut dyn EngineCore, u: RequestUpdate, now: Instant, live: &mut HashMap<String, Live>, metrics: &Metrics) {
    let Some(l) = live.get_mut(&u.request_id) else {
        return; // aborted while the step ran
    };
    let new_tokens: usize = u.deltas.iter().map(|d| d.token_ids.len()).sum();
    if new_tokens > 0 {
        metrics.on_tokens(new_tokens);
        match l.last_token {
            None => metrics.observe_ttft(now.duration_since(l.arrival).as_secs_f64()),
            Some(t) => metrics.observe_itl(now.duration_since(t).as_secs_f64()),
        }
        l.last_token = Some(now);
    }
    let finished = u.finished;
    let reason = u.deltas.iter().find_map(|d| d.finish_reason).map_or("stop", Finish::as_str);
    let id = u.request_id.clone();
    let sent = l.events.send(Event::Update(u)).is_ok();
    if finished {
        let l = live.remove(&id).expect("present");
        metrics.on_request_finished(reason, Some(now.duration_since(l.arrival).as_secs_f64()));
    } else if !sent {
        tracing::debug!(request_id = %id, "client went away: aborting");
        live.remove(&id);
        core.abort(&id);
        metrics.on_request_finished("abort", None);
    }
}
