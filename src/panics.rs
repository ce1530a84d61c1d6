//! Panics caught at thread and probe boundaries, turned into messages a user can read.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The text a panic was raised with (`panic!("...")` payloads are `&str` or `String`).
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into())
}

/// Runs `f`, turning a panic inside it into `Err` with the panic's message prefixed by `what`.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(format!("{what} panicked: {}", message(payload.as_ref()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let result: Result<(), String> = guarded("the GPU probe", || panic!("no driver {}", 7));
        assert_eq!(result, Err("the GPU probe panicked: no driver 7".into()));
        let literal: Result<(), String> = guarded("x", || panic!("plain"));
        assert_eq!(literal, Err("x panicked: plain".into()));
        assert_eq!(guarded("x", || Ok::<_, String>(3)), Ok(3));
    }
}
