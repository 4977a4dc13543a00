//! Who wants pictures now: the encoder thread encodes only while someone does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

/// Stream viewers and snapshot requests waiting, counted by guards, and the encoder thread to
/// wake when the first arrives (it sleeps while nobody wants a picture).
#[derive(Debug, Default)]
pub(crate) struct Demand {
    viewers: AtomicUsize,
    snapshots: AtomicUsize,
    encoder: OnceLock<Thread>,
}

impl Demand {
    /// The encoder thread, to wake when demand appears.
    pub(crate) fn set_encoder(&self, thread: Thread) {
        let _ = self.encoder.set(thread);
    }

    pub(crate) fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshots(&self) -> usize {
        self.snapshots.load(Ordering::Relaxed)
    }

    pub(crate) fn wanted(&self) -> bool {
        self.viewers() > 0 || self.snapshots() > 0
    }

    /// A stream viewer, counted until the guard drops (its connection ended).
    pub(crate) fn viewer(self: &Arc<Self>) -> DemandGuard {
        DemandGuard::new(self, Kind::Viewer)
    }

    /// A snapshot request waiting for a picture, counted until the guard drops.
    pub(crate) fn snapshot(self: &Arc<Self>) -> DemandGuard {
        DemandGuard::new(self, Kind::Snapshot)
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Viewer => &self.viewers,
            Kind::Snapshot => &self.snapshots,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Viewer,
    Snapshot,
}

/// One viewer or waiting snapshot; uncounted when dropped (also when its task is cancelled).
#[derive(Debug)]
pub(crate) struct DemandGuard {
    demand: Arc<Demand>,
    kind: Kind,
}

impl DemandGuard {
    fn new(demand: &Arc<Demand>, kind: Kind) -> Self {
        demand.counter(kind).fetch_add(1, Ordering::Relaxed);
        if let Some(encoder) = demand.encoder.get() {
            encoder.unpark();
        }
        DemandGuard {
            demand: Arc::clone(demand),
            kind,
        }
    }
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.demand
            .counter(self.kind)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_lasts_as_long_as_its_guards() {
        let demand = Arc::new(Demand::default());
        assert!(!demand.wanted());
        let viewer = demand.viewer();
        let snapshot = demand.snapshot();
        let second = demand.viewer();
        assert_eq!((demand.viewers(), demand.snapshots()), (2, 1));
        drop(viewer);
        drop(second);
        assert!(demand.wanted());
        drop(snapshot);
        assert!(!demand.wanted());
    }
}
