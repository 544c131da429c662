//! `TESSERA_CUDA_HOST_TIMES=1`: the host time of each backend call that queues work without
//! waiting for it (uploads, in-place writes, graph launches, started read-backs, ...),
//! printed when the backend drops. Such a call that takes far longer than its peers waited
//! for the device: under async scheduling nothing before the read-back should.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Calls and nanoseconds by call name; `None` when off.
pub(crate) struct HostTimes(Option<Mutex<HashMap<&'static str, (u64, u64)>>>);

impl HostTimes {
    pub fn from_env() -> Self {
        HostTimes((std::env::var("TESSERA_CUDA_HOST_TIMES").as_deref() == Ok("1")).then(Default::default))
    }

    /// Runs `f`, adding its wall time to `name` when on.
    pub fn time<T>(&self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let Some(m) = &self.0 else { return f() };
        let t0 = Instant::now();
        let r = f();
        let ns = t0.elapsed().as_nanos() as u64;
        if let Ok(mut m) = m.lock() {
            let e = m.entry(name).or_default();
            *e = (e.0 + 1, e.1 + ns);
        }
        r
    }

    /// The table, by total time.
    pub fn report(&self) -> Option<String> {
        let m = self.0.as_ref()?.lock().ok()?;
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .1));
        let mut out = format!("HOSTTIME {:<16}{:>10}{:>12}{:>10}\n", "call", "calls", "total ms", "avg us");
        for (name, (n, ns)) in rows {
            out += &format!("HOSTTIME {name:<16}{n:>10}{:>12.2}{:>10.2}\n", *ns as f64 * 1e-6, *ns as f64 * 1e-3 / (*n).max(1) as f64);
        }
        Some(out)
    }
}
