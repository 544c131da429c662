//! Server-sent events: a streaming handler runs as its own task and pushes JSON events into
//! a bounded channel; the response body drains it. When the client goes away the body (and
//! with it the receiver) is dropped, `SseSender::closed` fires, and the task returns, which
//! drops its request handles and so aborts the requests at the engine.
//!
//! ```text
//! task ──send_json(chunk)──> mpsc(64) ──> Sse body: "data: {...}\n\n" ... "data: [DONE]\n\n"
//!   └── select! { closed() => return (abort), next engine event => ... }
//! ```

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;

/// The producing side of one SSE response.
pub struct SseSender {
    tx: mpsc::Sender<String>,
}

impl SseSender {
    /// Sends one `data:` event; false once the client has gone.
    pub async fn send_json(&self, v: &impl Serialize) -> bool {
        match serde_json::to_string(v) {
            Ok(s) => self.tx.send(s).await.is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a stream chunk");
                false
            }
        }
    }

    /// Sends an error event (`data: {"error": {...}}`), as vLLM does when a stream fails.
    pub async fn send_error(&self, e: &ApiError) -> bool {
        self.send_json(&e.body()).await
    }

    /// Sends `data: [DONE]`.
    pub async fn done(&self) {
        let _ = self.tx.send("[DONE]".to_string()).await;
    }

    /// Resolves when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// Starts `produce` as a task and answers with its events as an SSE stream.
pub fn sse_response<F, Fut>(produce: F) -> Response
where
    F: FnOnce(SseSender) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<String>(64);
    tokio::spawn(produce(SseSender { tx }));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok::<_, Infallible>(Event::default().data(s)), rx))
    });
    Sse::new(stream).into_response()
}
