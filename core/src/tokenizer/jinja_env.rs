//! The minijinja environment configured like transformers' Jinja2 sandbox for chat templates.
//!
//! transformers (`_cached_compile_jinja_template`) uses `ImmutableSandboxedEnvironment(
//! trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])`, default
//! `keep_trailing_newline=False`, no autoescape, plus `raise_exception`, `strftime_now` and its
//! own `tojson`. On top of minijinja this module adds what Python would do differently:
//!
//! * printing (`{{ x }}`), `string`, `trim` and `join` spell values as Python's `str()`
//!   (`None`, `True`, `{'a': 1.0}`), see [`super::pyfmt`];
//! * `tojson` is `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//!   (no HTML escaping of `<>&'`);
//! * Python string/dict/list methods (`.strip()`, `.items()`, `.get()`...) via minijinja-contrib's
//!   pycompat callback;
//! * `{% generation %}...{% endgeneration %}` (transformers' AssistantTracker tag) renders its
//!   body; it is rewritten to a scope block with the same whitespace modifiers.
//!
//! Known gap: `~` concatenation of a non-string (bool, none, dict) uses minijinja's spelling
//! (`true`, `none`) where Python's would be `True`, `None`; no real template we test does that.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

use super::pyfmt::{json_dumps, py_str, JsonOptions};

/// The clock behind `strftime_now` (local wall time, as Python's `datetime.now()`).
pub type Clock = Arc<dyn Fn() -> chrono::NaiveDateTime + Send + Sync>;

/// The system clock in local time.
pub fn system_clock() -> Clock {
    Arc::new(|| chrono::Local::now().naive_local())
}

/// Carried as the source of the minijinja error raised by `raise_exception(msg)`.
#[derive(Debug)]
pub struct RaisedException(pub String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// A fresh environment with transformers' chat-template settings and helpers.
pub fn new_environment(clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        if value.is_undefined() {
            return Ok(());
        }
        match value.as_str() {
            Some(s) if value.kind() == ValueKind::String => out.write_str(s)?,
            _ => out.write_str(&py_str(value))?,
        }
        Ok(())
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: &Value| -> Value {
        if v.kind() == ValueKind::String {
            v.clone()
        } else {
            Value::from(py_str(v))
        }
    });
    env.add_filter("trim", |v: &Value, chars: Option<&str>| -> String {
        py_strip(&py_str(v), chars, true, true)
    });
    env.add_filter("join", join);
    env.add_function("raise_exception", |msg: Value| -> Result<Value, Error> {
        let msg = py_str(&msg);
        Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(RaisedException(msg)))
    });
    set_clock(&mut env, clock);
    env
}

/// (Re)register `strftime_now(format)` on `clock`.
pub fn set_clock(env: &mut Environment<'static>, clock: Clock) {
    env.add_function(
        "strftime_now",
        move |format: &str| -> Result<String, Error> {
            use std::fmt::Write;
            let mut out = String::new();
            write!(out, "{}", clock().format(format)).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: invalid format {format:?}"),
                )
            })?;
            Ok(out)
        },
    );
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let ensure_ascii = match kwargs
        .get::<Option<Value>>("ensure_ascii")?
        .or(ensure_ascii)
    {
        Some(v) => v.is_true(),
        None => false,
    };
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) if v.kind() == ValueKind::String => s.to_string(),
            _ => {
                let n = v.as_i64().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an int, a string or None",
                    )
                })?;
                " ".repeat(n.max(0) as usize)
            }
        }),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let mut opts = JsonOptions::new(ensure_ascii, indent, sort_keys);
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let parts: Vec<Value> = seps.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                    opts.item_separator = item.as_str().unwrap_or_default().to_string();
                    opts.key_separator = key.as_str().unwrap_or_default().to_string();
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be (item, key)",
                    ))
                }
            }
        }
    }
    kwargs.assert_all_used()?;
    json_dumps(value, &opts)
}

/// Jinja2's `join(value, d='', attribute=None)` with Python `str()` of each item.
fn join(value: &Value, sep: Option<&str>, kwargs: Kwargs) -> Result<String, Error> {
    let sep = kwargs.get::<Option<&str>>("d")?.or(sep).unwrap_or("");
    let attribute = kwargs.get::<Option<&str>>("attribute")?;
    kwargs.assert_all_used()?;
    if value.kind() == ValueKind::String {
        let s = value.as_str().unwrap_or_default();
        return Ok(s.chars().map(String::from).collect::<Vec<_>>().join(sep));
    }
    let mut parts = Vec::new();
    for item in value.try_iter()? {
        let item = match attribute {
            Some(path) => path.split('.').try_fold(item, |v, name| v.get_attr(name))?,
            None => item,
        };
        parts.push(py_str(&item));
    }
    Ok(parts.join(sep))
}

/// Python `str.strip/lstrip/rstrip(chars)`; whitespace is Python's (`str.isspace`).
pub fn py_strip(s: &str, chars: Option<&str>, left: bool, right: bool) -> String {
    let is_strip = |c: char| match chars {
        Some(set) => set.contains(c),
        None => c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(is_strip);
    }
    if right {
        out = out.trim_end_matches(is_strip);
    }
    out.to_string()
}

/// Rewrite `{% generation %}` / `{% endgeneration %}` (any `-`/`+` modifiers) to
/// `{% with %}` / `{% endwith %}`: a block tag (so trim/lstrip apply the same way) whose body
/// renders once in its own scope, like Jinja2's call block.
pub fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut changed = false;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((len, open_mod, end, close_mod)) => {
                let word = if end { "endwith" } else { "with" };
                out.push_str(&format!("{{%{open_mod} {word} {close_mod}%}}"));
                rest = &tag[len..];
                changed = true;
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(source)
    }
}

/// `{%[-+]? \s* (end)?generation \s* [-+]? %}` at the start of `s`:
/// (length, open modifier, is end tag, close modifier).
fn parse_generation_tag(s: &str) -> Option<(usize, &str, bool, &str)> {
    let mut i = 2;
    let bytes = s.as_bytes();
    let open_mod = match bytes.get(i) {
        Some(b'-') | Some(b'+') => {
            i += 1;
            &s[2..3]
        }
        _ => "",
    };
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let (end, word_len) = if s[i..].starts_with("endgeneration") {
        (true, "endgeneration".len())
    } else if s[i..].starts_with("generation") {
        (false, "generation".len())
    } else {
        return None;
    };
    i += word_len;
    if !bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'-' || *b == b'+' || *b == b'%')
    {
        return None;
    }
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    let close_mod = match bytes.get(i) {
        Some(b'-') | Some(b'+') => {
            i += 1;
            &s[i - 1..i]
        }
        _ => "",
    };
    s[i..]
        .starts_with("%}")
        .then_some((i + 2, open_mod, end, close_mod))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_keep_their_modifiers() {
        let src = "a{% generation %}b{%- endgeneration -%}c{%+generation%}{% generations %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "a{% with %}b{%- endwith -%}c{%+ with %}{% generations %}"
        );
        assert!(matches!(
            rewrite_generation_tags("{% if x %}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn strip_is_python_strip() {
        assert_eq!(py_strip(" \u{1f}x \n", None, true, true), "x");
        assert_eq!(py_strip("xxhixx", Some("x"), true, false), "hixx");
    }
}
