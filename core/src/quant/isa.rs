//! Which instruction set the quantized kernels run on, detected at run time.
//!
//! ```text
//! Level::Scalar       portable Rust; the only level on wasm32 and non-x86 targets
//! Level::Avx2         x86-64 with AVX2 + FMA + F16C          (maddubs/madd integer dots)
//! Level::Avx512Vnni   x86-64 with AVX-512 F/BW/DQ/VL + VNNI  (vpdpbusd integer dots)
//! ```
//! An [`Isa`] value is a *proof*: it can only be made for a level whose features this CPU
//! was checked to have ([`Isa::new`], [`Isa::detect`]). Every `#[target_feature]` kernel is
//! reached by matching on an `Isa`, which is what makes those `unsafe` calls sound.

/// An instruction-set level. Ordered: a higher level implies the features of the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Scalar,
    Avx2,
    Avx512Vnni,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Scalar, Level::Avx2, Level::Avx512Vnni];

    /// Short name for logs and `--isa` style options.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses [`Level::name`] (also accepts `avx512`).
    pub fn from_name(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" => Some(Level::Scalar),
            "avx2" => Some(Level::Avx2),
            "avx512" | "avx512vnni" => Some(Level::Avx512Vnni),
            _ => None,
        }
    }

    /// Whether this CPU has every feature the level's kernels use.
    fn detected(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx2.detected()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// A level whose features were detected on this CPU (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Isa(Level);

impl Isa {
    /// The portable level, available everywhere.
    pub const SCALAR: Isa = Isa(Level::Scalar);

    /// `level` if this CPU supports it.
    pub fn new(level: Level) -> Option<Isa> {
        level.detected().then_some(Isa(level))
    }

    /// The best level this CPU supports.
    pub fn detect() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::SCALAR)
    }

    /// Every level this CPU supports, lowest first (always starts with scalar).
    pub fn available() -> Vec<Isa> {
        Level::ALL.into_iter().filter_map(Isa::new).collect()
    }

    pub fn level(self) -> Level {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}
