//! The global in-flight byte budget (the `memory_limiter`).
//!
//! A receiver acquires bytes *before* it buffers or decompresses a request body and the permit
//! travels inside the [`Payload`](crate::Payload); it is released when the last exporter drops
//! the payload. Acquisition never waits: when the budget is exhausted the client gets a
//! retryable refusal at once, which is what keeps RSS bounded under any load.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A byte budget shared by every receiver of the process.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    limit: usize,
}

/// Bytes held against a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct MemoryPermit {
    permit: Option<OwnedSemaphorePermit>,
    sem: Arc<Semaphore>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (clamped to what a semaphore can hold).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget { sem: Arc::new(Semaphore::new(limit)), limit }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently held.
    pub fn in_use(&self) -> usize {
        self.limit - self.sem.available_permits()
    }

    /// Takes `bytes` (at most the whole budget) from the budget, waiting until they are free.
    /// For exporters' send buffers, never for admission (which must not wait).
    pub async fn acquire(&self, bytes: usize) -> MemoryPermit {
        let n = bytes.min(self.limit).min(u32::MAX as usize) as u32;
        let permit = if n == 0 { None } else { self.sem.clone().acquire_many_owned(n).await.ok() };
        MemoryPermit { permit, sem: self.sem.clone() }
    }

    /// Takes `bytes` from the budget, or returns `None` at once when not enough is left.
    pub fn try_acquire(&self, bytes: usize) -> Option<MemoryPermit> {
        let mut p = MemoryPermit { permit: None, sem: self.sem.clone() };
        if p.try_grow(bytes) { Some(p) } else { None }
    }
}

impl MemoryPermit {
    /// Bytes held by this permit.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// A new permit of `bytes` from the same budget, or `None` when not enough is left.
    pub fn try_sibling(&self, bytes: usize) -> Option<MemoryPermit> {
        let mut p = MemoryPermit { permit: None, sem: self.sem.clone() };
        if p.try_grow(bytes) { Some(p) } else { None }
    }

    /// Takes `extra` more bytes from the same budget; false (and nothing taken) when not enough
    /// is left.
    pub fn try_grow(&mut self, extra: usize) -> bool {
        if extra == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(extra) else { return false };
        match self.sem.clone().try_acquire_many_owned(n) {
            Ok(more) => {
                match &mut self.permit {
                    Some(p) => p.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Gives bytes back so that the permit holds at most `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if let Some(p) = &mut self.permit {
            let held = p.num_permits();
            if held > bytes {
                drop(p.split(held - bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_release_and_refuse() {
        let b = MemoryBudget::new(1000);
        let mut p = b.try_acquire(600).expect("fits");
        assert_eq!(b.in_use(), 600);
        assert!(b.try_acquire(500).is_none(), "over budget is refused at once");
        assert!(!p.try_grow(500));
        assert!(p.try_grow(400));
        assert_eq!(b.in_use(), 1000);
        p.shrink_to(100);
        assert_eq!(b.in_use(), 100);
        drop(p);
        assert_eq!(b.in_use(), 0);
    }
}
