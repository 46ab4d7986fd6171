//! Stopping a long core call from another thread: the Python glue sets the flag on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Points or sweeps between two looks at the flag in a long loop: a relaxed load is about a
/// nanosecond, and this many steps of any loop take well under a millisecond.
pub(crate) const CHECK_EVERY: usize = 1 << 14;

/// A flag that asks a running core call to stop; the call then returns [`Error::Interrupted`].
///
/// Long loops look at it every [`CHECK_EVERY`] steps, so a call stops within a few
/// milliseconds of [`Cancel::cancel`], whatever the size of its input.
#[derive(Debug, Default)]
pub struct Cancel(AtomicBool);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every call watching this flag to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once cancelled.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// [`Cancel::check`] on every [`CHECK_EVERY`]-th step `i` of a loop, nothing on the others.
    #[inline]
    pub(crate) fn every(&self, i: usize) -> Result<()> {
        if i % CHECK_EVERY == 0 {
            self.check()
        } else {
            Ok(())
        }
    }
}
