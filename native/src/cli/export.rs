//! `tessera export-hf`: write a GGUF model as a Hugging Face folder (config.json,
//! generation_config.json, model.safetensors, tokenizer.json, tokenizer_config.json with the
//! chat template), so the GGUF and safetensors loaders can be compared on one model.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tessera_core::tensor::DType;
use tessera_core::weights::gguf::export_hf;
use tessera_core::weights::GgufWeights;

use crate::load::resolve_gguf_path;

/// Weight dtype of the exported safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportDType {
    /// Exact: every dequantized GGUF value is an f32.
    Float32,
    Float16,
    Bfloat16,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A `.gguf` file, a folder holding one, or a hub repo id with --gguf-file.
    /// Omitted: the default model (SmolLM2-135M-Instruct Q4_1).
    #[arg(long, default_value_t = String::new(), hide_default_value = true)]
    pub model: String,
    /// With a hub repo id as --model: the GGUF file of that repo.
    #[arg(long)]
    pub gguf_file: Option<String>,
    /// Branch, tag or commit of a hub model.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// The folder to write (created; existing files of the same names are replaced).
    #[arg(long, short)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "float32")]
    pub dtype: ExportDType,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let Some(path) = resolve_gguf_path(&args.model, args.gguf_file.as_deref(), &args.revision, true)? else {
        bail!("{}: not a GGUF model (export-hf converts .gguf files)", args.model);
    };
    let weights = GgufWeights::open(&path)?;
    let dtype = match args.dtype {
        ExportDType::Float32 => DType::F32,
        ExportDType::Float16 => DType::F16,
        ExportDType::Bfloat16 => DType::BF16,
    };
    let folder = export_hf(&weights, dtype).with_context(|| path.display().to_string())?;
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    for (name, bytes) in &folder.files {
        let dest = args.output.join(name);
        std::fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    }
    eprintln!("exported {} ({}) to {}", path.display(), weights.architecture(), args.output.display());
    Ok(())
}
