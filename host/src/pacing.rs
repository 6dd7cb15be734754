//! Client-side token buckets per (account, region, EC2 throttling bucket), so a large run is
//! paced instead of throttled; the simulated EC2 uses the same buckets to model EC2's pace.
//!
//! EC2 throttles each account and region with a token bucket per action (or per
//! category of actions): a call takes one token, tokens refill at a fixed rate up to the
//! bucket size, and an empty bucket answers `RequestLimitExceeded`. We keep the same
//! buckets on our side and wait for a token before each call. A reservation may take the
//! bucket below zero; the caller then waits until the refill has paid the debt, so
//! concurrent callers queue fairly without a lock held across the wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Location;

/// A monotonic clock, injected so the buckets are tested without sleeping.
pub trait Clock: Send + Sync {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The EC2 throttling buckets our calls fall into (FACTS.md, "Throttling").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketClass {
    /// Describe* calls (filtered or by id): bucket 100, refill 20/s.
    NonMutating,
    /// Mutating calls without their own bucket: 50, 5/s.
    Mutating,
    /// CopyImage: 100, 1/s.
    CopyImage,
    /// ModifyImageAttribute: 100, 5/s.
    ModifyImageAttribute,
    /// DeregisterImage: 100, 5/s.
    DeregisterImage,
    /// DeleteSnapshot: 100, 5/s.
    DeleteSnapshot,
    /// CreateTags and DeleteTags: 100, 10/s.
    Tags,
}

impl BucketClass {
    /// The bucket an EC2 operation (by its API name) draws from.
    pub fn of(operation: &str) -> BucketClass {
        match operation {
            "CopyImage" => BucketClass::CopyImage,
            "ModifyImageAttribute" => BucketClass::ModifyImageAttribute,
            "DeregisterImage" => BucketClass::DeregisterImage,
            "DeleteSnapshot" => BucketClass::DeleteSnapshot,
            "CreateTags" | "DeleteTags" => BucketClass::Tags,
            op if op.starts_with("Describe") || op.starts_with("Get") || op.starts_with("List") => {
                BucketClass::NonMutating
            }
            _ => BucketClass::Mutating,
        }
    }

    /// (bucket size, refill per second).
    pub fn limits(self) -> (f64, f64) {
        match self {
            BucketClass::NonMutating => (100.0, 20.0),
            BucketClass::Mutating => (50.0, 5.0),
            BucketClass::CopyImage => (100.0, 1.0),
            BucketClass::ModifyImageAttribute | BucketClass::DeregisterImage | BucketClass::DeleteSnapshot => {
                (100.0, 5.0)
            }
            BucketClass::Tags => (100.0, 10.0),
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    updated: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn new(capacity: f64, refill_per_sec: f64, now: Duration) -> TokenBucket {
        TokenBucket { capacity, refill_per_sec, tokens: capacity, updated: now }
    }

    /// Takes one token at `now` and returns how long the caller must wait before
    /// making its call (zero when a token was there).
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.updated = self.updated.max(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.refill_per_sec) }
    }
}

/// Every bucket of a backend, keyed by location and class.
pub struct Pacer {
    clock: Arc<dyn Clock>,
    /// False: every call goes at once (an emulator that does not throttle).
    paced: bool,
    buckets: Mutex<BTreeMap<(Location, BucketClass), TokenBucket>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    /// Buckets driven by `clock`, each starting full.
    pub fn new(clock: Arc<dyn Clock>) -> Pacer {
        Pacer { clock, paced: true, buckets: Mutex::new(BTreeMap::new()) }
    }

    /// A pacer that never waits.
    pub fn unpaced(clock: Arc<dyn Clock>) -> Pacer {
        Pacer { clock, paced: false, buckets: Mutex::new(BTreeMap::new()) }
    }

    /// Reserves a token for `operation` in `location`; returns the wait before the call.
    pub fn reserve(&self, location: &Location, operation: &str) -> Duration {
        if !self.paced {
            return Duration::ZERO;
        }
        let class = BucketClass::of(operation);
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry((location.clone(), class)).or_insert_with(|| {
            let (capacity, refill) = class.limits();
            TokenBucket::new(capacity, refill, now)
        });
        bucket.reserve(now)
    }

    /// Waits (blocking the thread) until `operation` may be called in `location`.
    pub fn wait(&self, location: &Location, operation: &str) {
        let wait = self.reserve(location, operation);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Waits (asynchronously) until `operation` may be called in `location`.
    pub async fn acquire(&self, location: &Location, operation: &str) {
        let wait = self.reserve(location, operation);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A clock that moves only when the test says so.
    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    fn loc(region: &str) -> Location {
        Location { account: "123456789012".into(), region: region.into() }
    }

    #[test]
    fn operations_fall_into_ec2_throttling_buckets() {
        let cases = [
            ("DescribeImages", BucketClass::NonMutating, (100.0, 20.0)),
            ("DescribeImageAttribute", BucketClass::NonMutating, (100.0, 20.0)),
            ("CopyImage", BucketClass::CopyImage, (100.0, 1.0)),
            ("ModifyImageAttribute", BucketClass::ModifyImageAttribute, (100.0, 5.0)),
            ("DeregisterImage", BucketClass::DeregisterImage, (100.0, 5.0)),
            ("DeleteSnapshot", BucketClass::DeleteSnapshot, (100.0, 5.0)),
            ("CreateTags", BucketClass::Tags, (100.0, 10.0)),
            ("DeleteTags", BucketClass::Tags, (100.0, 10.0)),
            ("EnableImageDeprecation", BucketClass::Mutating, (50.0, 5.0)),
            ("DisableImage", BucketClass::Mutating, (50.0, 5.0)),
        ];
        for (op, class, limits) in cases {
            assert_eq!(BucketClass::of(op), class, "{op}");
            assert_eq!(class.limits(), limits, "{op}");
        }
    }

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_paces_at_the_refill_rate() {
        let mut bucket = TokenBucket::new(100.0, 1.0, Duration::ZERO);
        for i in 0..100 {
            assert_eq!(bucket.reserve(Duration::ZERO), Duration::ZERO, "call {i} of the burst");
        }
        assert_eq!(bucket.reserve(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(bucket.reserve(Duration::ZERO), Duration::from_secs(2), "callers queue behind each other");
    }

    #[test]
    fn tokens_refill_over_time_up_to_the_bucket_size() {
        let mut bucket = TokenBucket::new(2.0, 10.0, Duration::ZERO);
        bucket.reserve(Duration::ZERO);
        bucket.reserve(Duration::ZERO);
        assert_eq!(bucket.reserve(Duration::from_millis(100)), Duration::ZERO, "100 ms at 10/s refills one token");
        // A long idle time refills no more than the capacity.
        let later = Duration::from_secs(3600);
        assert_eq!(bucket.reserve(later), Duration::ZERO);
        assert_eq!(bucket.reserve(later), Duration::ZERO);
        assert_eq!(bucket.reserve(later), Duration::from_millis(100));
    }

    #[test]
    fn copies_are_paced_at_one_per_second_per_location() {
        let clock = Arc::new(ManualClock::default());
        let pacer = Pacer::new(clock.clone());
        let east = loc("us-east-1");
        for _ in 0..100 {
            assert_eq!(pacer.reserve(&east, "CopyImage"), Duration::ZERO);
        }
        assert_eq!(pacer.reserve(&east, "CopyImage"), Duration::from_secs(1));
        // Another region and another bucket are untouched.
        assert_eq!(pacer.reserve(&loc("eu-west-1"), "CopyImage"), Duration::ZERO);
        assert_eq!(pacer.reserve(&east, "DescribeImages"), Duration::ZERO);
        // After 5 s of refill the queue has drained and 4 tokens are back.
        clock.advance(Duration::from_secs(5));
        for _ in 0..4 {
            assert_eq!(pacer.reserve(&east, "CopyImage"), Duration::ZERO);
        }
        assert_eq!(pacer.reserve(&east, "CopyImage"), Duration::from_secs(1));
    }
}
