//! `tessera chat`: an interactive terminal chat. Each line of stdin is a user turn; the reply
//! streams token by token through the model's chat template; the history is kept; `/exit`
//! (or end of input) quits, `/clear` forgets the history.

use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tessera_core::sample::RequestOutputKind;

use super::args::{EngineArgs, SamplingArgs};
use crate::load::ModelArgs;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// A system message opening the conversation.
    #[arg(long)]
    pub system: Option<String>,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let mut params = args.sampling.params(None)?;
    params.output_kind = RequestOutputKind::Delta;
    params.n = 1;
    crate::with_model!(&args.model, |m| chat_on(&args, params, m))
}

/// The chat loop on the loaded model (any backend).
fn chat_on<B: tessera_core::backend::Backend>(args: &ChatArgs, params: tessera_core::sample::SamplingParams, m: crate::load::LoadedModel<B>) -> Result<()> {
    if m.tokenizer.is_none() || m.chat_template.is_none() {
        bail!("{}: chat needs the model's tokenizer and chat template", m.path.display());
    }
    let mut llm = args.engine.build(m)?;
    let mut history: Vec<Value> = Vec::new();
    if let Some(s) = &args.system {
        history.push(json!({"role": "system", "content": s}));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut turn = 0u64;
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/clear" => {
                history.retain(|m| m["role"] == "system");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": line}));
        let prompt = match llm.chat_prompt(&Value::Array(history.clone())) {
            Ok(p) => p,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        let id = format!("chat-{turn}");
        turn += 1;
        if let Err(e) = llm.engine.add_request(id, prompt, params.clone()) {
            history.pop();
            eprintln!("error: {e}");
            continue;
        }
        let mut reply = String::new();
        while llm.engine.has_unfinished_requests() {
            for o in llm.engine.step()? {
                for c in &o.outputs {
                    write!(out, "{}", c.text)?;
                    reply.push_str(&c.text);
                }
                out.flush()?;
            }
        }
        writeln!(out)?;
        history.push(json!({"role": "assistant", "content": reply}));
    }
}
