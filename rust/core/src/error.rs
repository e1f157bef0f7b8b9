//! The one error type of the core. The bindings map each variant once onto a
//! Python exception class.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A caller-supplied argument, array or file content is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The loss became NaN or infinite during training.
    #[error("training diverged: the loss became {loss} at batch {batch} of the epoch")]
    Diverged { batch: usize, loss: f64 },
    /// A bug: an invariant the core maintains does not hold, or a worker panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;

/// Shorthand for returning `CoreError::InvalidInput` with a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::CoreError::InvalidInput(format!($($arg)*)))
    };
}
pub(crate) use invalid;
