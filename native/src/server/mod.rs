//! `tessera serve`: an OpenAI-compatible HTTP server (axum + tokio) in front of the engine,
//! behaving like vLLM's.
//!
//! ```text
//!  clients ──HTTP──> axum router (CORS, body limit, API key, JSON errors)
//!                      │  handlers: validate + tokenize (blocking pool), submit
//!                      ▼
//!                   EngineClient ──std mpsc──> engine thread (loads the model, then
//!                      ▲                        add_request / step / abort in a loop)
//!                      └──── per-request tokio channel (Accepted, Update deltas, Error)
//! ```
//!
//! Startup: bind, serve (503 while loading), the engine thread loads the model and flips
//! the state to ready. Shutdown (SIGINT/SIGTERM): stop accepting, give in-flight requests
//! `shutdown_timeout` to finish, abort the rest, stop the engine thread, exit 0.

mod chat;
mod completions;
pub mod core_engine;
pub mod engine;
pub mod error;
mod generate;
pub mod json;
pub mod metrics;
mod openapi;
pub mod params;
pub mod protocol;
mod routes;
mod sse;
pub mod state;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use engine::{EngineClient, EngineCore};
use metrics::Metrics;
use state::{AppState, ModelInfo, ServerConfig};

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub config: ServerConfig,
    pub shutdown_timeout: Duration,
}

/// The router with every endpoint and layer.
pub fn router(state: AppState) -> Router {
    let origins = &state.config().allowed_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let cors = CorsLayer::new().allow_origin(allow_origin).allow_methods(Any).allow_headers(Any);
    Router::new()
        .route("/v1/completions", post(completions::create_completion))
        .route("/v1/chat/completions", post(chat::create_chat_completion))
        .route("/v1/models", get(routes::models))
        .route("/tokenize", post(routes::tokenize))
        .route("/detokenize", post(routes::detokenize))
        .route("/health", get(routes::health))
        .route("/version", get(routes::version))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::require_api_key))
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .layer(cors)
        .with_state(state)
}

/// Serves until SIGINT/SIGTERM. `init` runs on the engine thread: it loads the model and
/// builds the engine. A failed load ends the server with an error.
pub fn serve<E, I>(opts: ServeOptions, init: I) -> Result<()>
where
    E: EngineCore + 'static,
    I: FnOnce() -> Result<(E, ModelInfo), String> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tessera-http").build()?;
    rt.block_on(serve_async(opts, init))
}

async fn serve_async<E, I>(opts: ServeOptions, init: I) -> Result<()>
where
    E: EngineCore + 'static,
    I: FnOnce() -> Result<(E, ModelInfo), String> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", opts.host, opts.port))?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let slot: Arc<OnceLock<Arc<ModelInfo>>> = Arc::new(OnceLock::new());
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<String>();
    let on_ready = {
        let (slot, metrics) = (slot.clone(), metrics.clone());
        move |info: ModelInfo| {
            metrics.set_model_name(&info.names[0]);
            tracing::info!(model = %info.names[0], max_model_len = info.max_model_len, "model loaded; serving");
            eprintln!("tessera: model {} is ready", info.names[0]);
            let _ = slot.set(Arc::new(info));
        }
    };
    let (client, join) = engine::spawn(init, metrics.clone(), on_ready, move |e| {
        let _ = fail_tx.send(e);
    })?;
    let state = AppState::new(opts.config.clone(), slot, client.clone(), metrics);
    tracing::info!(%addr, "listening");
    eprintln!("tessera: listening on http://{addr} (loading the model)");

    let failure: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let stop = stop_signal(fail_rx, failure.clone(), client.clone(), opts.shutdown_timeout);
    axum::serve(listener, router(state)).with_graceful_shutdown(stop).await.context("HTTP server")?;
    client.shutdown();
    tokio::task::spawn_blocking(move || join.join()).await?.map_err(|_| anyhow!("the engine thread panicked"))?;
    match failure.get() {
        Some(e) => Err(anyhow!("loading the model failed: {e}")),
        None => {
            eprintln!("tessera: shut down cleanly");
            Ok(())
        }
    }
}

/// Resolves when the server should stop accepting: on SIGINT/SIGTERM (then in-flight
/// requests get `grace` before the engine aborts them; a second signal aborts at once) or
/// when the model failed to load.
async fn stop_signal(fail_rx: tokio::sync::oneshot::Receiver<String>, failure: Arc<OnceLock<String>>, client: EngineClient, grace: Duration) {
    tokio::select! {
        _ = signal() => {
            tracing::info!("shutdown signal: no new connections; finishing in-flight requests");
            eprintln!("tessera: shutting down (in-flight requests get {:.1}s)", grace.as_secs_f64());
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {}
                    _ = signal() => {}
                }
                tracing::info!("aborting the requests still in flight");
                client.shutdown();
            });
        }
        Ok(e) = fail_rx => {
            tracing::error!(error = %e, "model loading failed");
            let _ = failure.set(e);
        }
    }
}

async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests;
