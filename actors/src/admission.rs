//! Admission control: token-bucket limits on commits per second, enforced on the
//! caller's side of the commit path (in the [`Committer`](crate::Committer), before the
//! Sequencer's mailbox), so the single writer never waits for a limiter.
//!
//! Each limit is a token bucket kept as one atomic "theoretical arrival time" (the
//! generic cell rate algorithm, GCRA): admitting a commit is a compare-and-swap, no lock.
//! A commit takes a token from the global bucket, from the bucket of each project it
//! writes, and (when configured) from its caller's bucket; if any bucket is empty it
//! either waits for the earliest moment all of them admit it (bounded by
//! [`RateLimits::max_wait`] and the commit's deadline) or is refused with
//! [`CommitError::RateLimited`]. Tokens taken from one bucket are handed back when a
//! later bucket refuses.
//!
//! Time is an argument (nanoseconds since the limiter was created), so tests drive the
//! buckets with chosen times; [`Limiter::now`] reads the monotonic clock.
//!
//! The engine's own commits (audit rows, persisted policy, the write freeze) are never
//! limited.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aedb_authz::CallerId;
use aedb_model::{Ddl, Mutation, ProjectName};
use parking_lot::RwLock;

use crate::commit::Request;
use crate::error::CommitError;

/// Fewest commits a [`RateLimit`] may allow per period.
pub const MIN_RATE_COMMITS: u64 = 1;
/// Shortest period of a [`RateLimit`].
pub const MIN_RATE_PERIOD: Duration = Duration::from_millis(1);
/// Longest period of a [`RateLimit`] (one day).
pub const MAX_RATE_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Highest sustained rate a [`RateLimit`] may allow (commits per second).
pub const MAX_RATE_PER_SECOND: u64 = 100_000_000;
/// Largest burst of a [`RateLimit`].
pub const MAX_BURST: u64 = 10_000_000;
/// Longest [`RateLimits::max_wait`].
pub const MAX_ADMISSION_WAIT: Duration = Duration::from_secs(60);
/// Most projects (and callers) given a bucket and counters of their own: commits
/// naming further ones (for example projects that do not exist, which fail later)
/// share one overflow bucket and are not counted per project, so a client cannot
/// grow the limiter's memory without bound.
pub const MAX_TRACKED: usize = 10_000;

/// A sustained rate (`commits` per `period`) and a burst (commits admitted at once
/// from a full bucket; by default one second's worth, at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    commits: u64,
    period: Duration,
    burst: Option<u64>,
}

impl RateLimit {
    /// `commits` per `period`, with the default burst. Validated by
    /// [`RateLimits::validate`] (at open, and by `set_rate_limits_as`).
    pub fn new(commits: u64, period: Duration) -> RateLimit {
        RateLimit {
            commits,
            period,
            burst: None,
        }
    }

    /// `commits` per second, with the default burst.
    pub fn per_second(commits: u64) -> RateLimit {
        RateLimit::new(commits, Duration::from_secs(1))
    }

    /// Sets the burst: how many commits a full bucket admits at once.
    pub fn burst(mut self, burst: u64) -> RateLimit {
        self.burst = Some(burst);
        self
    }

    /// Commits per period.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst in force (the explicit one, or one second's worth, at least 1).
    pub fn effective_burst(&self) -> u64 {
        self.burst.unwrap_or_else(|| {
            let per_sec = u128::from(self.commits) * 1_000_000_000 / self.period_nanos().max(1);
            u64::try_from(per_sec).unwrap_or(u64::MAX).max(1)
        })
    }

    fn period_nanos(&self) -> u128 {
        self.period.as_nanos()
    }

    /// Nanoseconds between two admitted commits at the sustained rate.
    fn interval_nanos(&self) -> u64 {
        u64::try_from(self.period_nanos() / u128::from(self.commits.max(1)))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn validate(&self, what: &'static str) -> Result<(), RateLimitError> {
        let invalid = |reason| RateLimitError { what, reason };
        if self.commits < MIN_RATE_COMMITS {
            return Err(invalid("the rate must allow at least one commit"));
        }
        if self.period < MIN_RATE_PERIOD || self.period > MAX_RATE_PERIOD {
            return Err(invalid("the period must be 1 ms ..= 24 h"));
        }
        let per_sec = u128::from(self.commits) * 1_000_000_000 / self.period_nanos();
        if per_sec > u128::from(MAX_RATE_PER_SECOND) {
            return Err(invalid(
                "the rate must be at most 100,000,000 commits per second",
            ));
        }
        if let Some(b) = self.burst
            && !(1..=MAX_BURST).contains(&b)
        {
            return Err(invalid("the burst must be 1 ..= 10,000,000"));
        }
        // The bucket's tolerance is `(burst - 1) * interval` nanoseconds on a u64 clock:
        // beyond about 146 years it would saturate and admit everything.
        let span = u128::from(self.interval_nanos()) * u128::from(self.effective_burst());
        if span > 1u128 << 62 {
            return Err(invalid(
                "the burst times the interval between commits must be at most about 146 years",
            ));
        }
        Ok(())
    }
}

/// The commit admission limits of an instance (all off by default).
///
/// ```
/// use std::time::Duration;
/// use aedb_actors::{RateLimit, RateLimits};
/// let limits = RateLimits::new()
///     .global(RateLimit::per_second(50_000))
///     .per_project(RateLimit::per_second(10_000).burst(500))
///     .project("payments".parse()?, RateLimit::per_second(20_000))
///     .per_caller(RateLimit::per_second(1_000))
///     .max_wait(Duration::from_millis(50));
/// assert!(limits.validate().is_ok());
/// assert!(RateLimits::new().global(RateLimit::per_second(0)).validate().is_err());
/// # Ok::<(), aedb_model::NameError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    global: Option<RateLimit>,
    per_project: Option<RateLimit>,
    projects: BTreeMap<ProjectName, RateLimit>,
    per_caller: Option<RateLimit>,
    max_wait: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new()
    }
}

impl RateLimits {
    /// No limits; a waiting commit waits at most 100 ms once limits are set.
    pub fn new() -> RateLimits {
        RateLimits {
            global: None,
            per_project: None,
            projects: BTreeMap::new(),
            per_caller: None,
            max_wait: Duration::from_millis(100),
        }
    }

    /// Limits all commits together.
    pub fn global(mut self, limit: RateLimit) -> RateLimits {
        self.global = Some(limit);
        self
    }

    /// Limits the commits writing each project (each project has its own bucket),
    /// unless [`RateLimits::project`] sets one for it.
    pub fn per_project(mut self, limit: RateLimit) -> RateLimits {
        self.per_project = Some(limit);
        self
    }

    /// Limits the commits writing `project` (overrides [`RateLimits::per_project`]).
    pub fn project(mut self, project: ProjectName, limit: RateLimit) -> RateLimits {
        self.projects.insert(project, limit);
        self
    }

    /// Limits each authenticated caller's commits (each caller has its own bucket).
    pub fn per_caller(mut self, limit: RateLimit) -> RateLimits {
        self.per_caller = Some(limit);
        self
    }

    /// Longest a waiting commit (`commit`, not `try_commit`) waits for admission
    /// before it is refused with [`CommitError::RateLimited`] (default 100 ms, at most
    /// 60 s; zero makes every commit fail fast).
    pub fn max_wait(mut self, wait: Duration) -> RateLimits {
        self.max_wait = wait;
        self
    }

    /// The longest admission wait.
    pub fn wait_bound(&self) -> Duration {
        self.max_wait
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.global.is_some()
            || self.per_project.is_some()
            || !self.projects.is_empty()
            || self.per_caller.is_some()
    }

    /// Checks every limit: zero or absurd rates, bursts and waits are refused.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        if let Some(l) = &self.global {
            l.validate("global")?;
        }
        if let Some(l) = &self.per_project {
            l.validate("per_project")?;
        }
        for l in self.projects.values() {
            l.validate("project")?;
        }
        if let Some(l) = &self.per_caller {
            l.validate("per_caller")?;
        }
        if self.max_wait > MAX_ADMISSION_WAIT {
            return Err(RateLimitError {
                what: "max_wait",
                reason: "the wait bound must be at most 60 s",
            });
        }
        Ok(())
    }

    fn project_limit(&self, project: &ProjectName) -> Option<RateLimit> {
        self.projects.get(project).copied().or(self.per_project)
    }
}

/// A rate limit is zero, absurd, or out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} commit rate limit: {reason}")]
pub struct RateLimitError {
    /// Which limit (`global`, `per_project`, `project`, `per_caller`, `max_wait`).
    pub what: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

/// One token bucket (GCRA): the theoretical arrival time of the next commit, in
/// nanoseconds since the limiter's origin.
#[derive(Debug)]
struct Bucket {
    tat: AtomicU64,
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
}

impl Bucket {
    fn new(limit: &RateLimit) -> Bucket {
        let interval = limit.interval_nanos();
        Bucket {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(limit.effective_burst().saturating_sub(1)),
        }
    }

    /// How long after `now` this bucket admits one more commit (zero: now).
    fn wait_at(&self, now: u64) -> u64 {
        let tat = self.tat.load(Ordering::Acquire).max(now);
        tat.saturating_sub(now.saturating_add(self.tolerance))
    }

    /// Takes a token for a commit admitted at `at` (>= now) if the bucket admits it
    /// then; `false` when another commit took it first.
    fn take(&self, now: u64, at: u64) -> bool {
        let mut current = self.tat.load(Ordering::Acquire);
        debug_assert!(at >= now);
        loop {
            // Standard GCRA: the commit runs at `at`, so it is charged from then on (a
            // commit that waited on another bucket must not be charged as of `now`, or
            // this bucket would admit a burst on top of it at `at`).
            let tat = current.max(at);
            if tat.saturating_sub(at.saturating_add(self.tolerance)) > 0 {
                return false;
            }
            let next = tat.saturating_add(self.interval);
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Hands back a token taken by [`Bucket::take`].
    fn give_back(&self) {
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(self.interval))
            });
    }
}

/// Admitted and limited commits of one project.
#[derive(Debug, Default)]
struct ProjectCounts {
    admitted: AtomicU64,
    limited: AtomicU64,
}

/// Admission figures of one project (in `operational_metrics().admission`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectAdmission {
    /// The project.
    pub project: String,
    /// Commits admitted (every commit writing the project, limited or not).
    pub admitted: u64,
    /// Commits refused with `RateLimited`.
    pub limited: u64,
}

/// The buckets in force (replaced as a whole when the limits change).
#[derive(Debug)]
struct Buckets {
    limits: RateLimits,
    global: Option<Bucket>,
    projects: RwLock<HashMap<ProjectName, Arc<Bucket>>>,
    callers: RwLock<HashMap<CallerId, Arc<Bucket>>>,
    /// Shared by projects beyond [`MAX_TRACKED`] (per-project limit).
    project_overflow: Option<Arc<Bucket>>,
    /// Shared by callers beyond [`MAX_TRACKED`].
    caller_overflow: Option<Arc<Bucket>>,
}

impl Buckets {
    fn new(limits: RateLimits) -> Buckets {
        Buckets {
            global: limits.global.as_ref().map(Bucket::new),
            project_overflow: limits
                .per_project
                .as_ref()
                .map(|l| Arc::new(Bucket::new(l))),
            caller_overflow: limits.per_caller.as_ref().map(|l| Arc::new(Bucket::new(l))),
            limits,
            projects: RwLock::new(HashMap::new()),
            callers: RwLock::new(HashMap::new()),
        }
    }

    fn project(&self, project: &ProjectName) -> Option<Arc<Bucket>> {
        let limit = self.limits.project_limit(project)?;
        // A project with a limit of its own always gets its own bucket (there are
        // only as many as configured).
        let overflow = if self.limits.projects.contains_key(project) {
            None
        } else {
            self.project_overflow.as_ref()
        };
        tracked(&self.projects, project, &limit, overflow)
    }

    fn caller(&self, caller: &CallerId) -> Option<Arc<Bucket>> {
        let limit = self.limits.per_caller?;
        tracked(&self.callers, caller, &limit, self.caller_overflow.as_ref())
    }
}

/// The bucket of `key` in `map`, created on first use; beyond [`MAX_TRACKED`] keys the
/// shared `overflow` bucket, unless there is none (`key` then gets its own).
fn tracked<K: std::hash::Hash + Eq + Clone>(
    map: &RwLock<HashMap<K, Arc<Bucket>>>,
    key: &K,
    limit: &RateLimit,
    overflow: Option<&Arc<Bucket>>,
) -> Option<Arc<Bucket>> {
    if let Some(b) = map.read().get(key) {
        return Some(b.clone());
    }
    let mut map = map.write();
    if map.len() >= MAX_TRACKED
        && !map.contains_key(key)
        && let Some(shared) = overflow
    {
        return Some(shared.clone());
    }
    Some(
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(Bucket::new(limit)))
            .clone(),
    )
}

/// What the limiter decided for one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted now.
    Admit,
    /// Admitted; the caller sleeps this long first (tokens are already taken).
    AdmitAfter(Duration),
    /// Refused; a retry after this long would likely be admitted.
    Refuse(Duration),
}

/// The commit limiter of one instance: the buckets in force and per-project counts.
/// Shared by every [`Committer`](crate::Committer) clone.
#[derive(Debug)]
pub struct Limiter {
    origin: Instant,
    buckets: RwLock<Arc<Buckets>>,
    counts: RwLock<HashMap<ProjectName, Arc<ProjectCounts>>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(RateLimits::new())
    }
}

impl Limiter {
    /// A limiter enforcing `limits` (validate them first).
    pub fn new(limits: RateLimits) -> Limiter {
        Limiter {
            origin: Instant::now(),
            buckets: RwLock::new(Arc::new(Buckets::new(limits))),
            counts: RwLock::new(HashMap::new()),
        }
    }

    /// Nanoseconds since the limiter was created (its clock).
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Replaces the limits (fresh, full buckets); counts are kept.
    pub fn set_limits(&self, limits: RateLimits) {
        *self.buckets.write() = Arc::new(Buckets::new(limits));
    }

    /// The limits in force.
    pub fn limits(&self) -> RateLimits {
        self.buckets.read().limits.clone()
    }

    /// The longest admission wait in force ([`RateLimits::max_wait`]).
    pub fn wait_bound(&self) -> Duration {
        self.buckets.read().limits.max_wait
    }

    /// Decides for a commit of `request` by `caller` at time `now` (from
    /// [`Limiter::now`]), waiting at most `max_wait` (`None`: the configured bound).
    /// Takes the tokens of an admitted commit and counts the decision per project.
    pub fn decide(
        &self,
        request: &Request,
        caller: Option<&CallerId>,
        now: u64,
        max_wait: Option<Duration>,
    ) -> Decision {
        let buckets = self.buckets.read().clone();
        let projects = projects_of(request);
        if !buckets.limits.is_limited() {
            self.count(&projects, false);
            return Decision::Admit;
        }
        let mut chosen: Vec<Arc<Bucket>> = Vec::with_capacity(projects.len() + 2);
        // Projects beyond MAX_TRACKED share one overflow bucket: a commit touching two of
        // them takes its token once, not twice.
        let candidates = projects
            .iter()
            .filter_map(|&p| buckets.project(p))
            .chain(caller.and_then(|c| buckets.caller(c)));
        for bucket in candidates {
            if !chosen.iter().any(|b| Arc::ptr_eq(b, &bucket)) {
                chosen.push(bucket);
            }
        }
        let global = buckets.global.as_ref();
        let bound = max_wait.unwrap_or(buckets.limits.max_wait);
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        // A few rounds: a concurrent commit may take the token between the look and
        // the take; then the look is repeated.
        for _ in 0..8 {
            let wait = global
                .into_iter()
                .chain(chosen.iter().map(|b| &**b))
                .map(|b| b.wait_at(now))
                .max()
                .unwrap_or(0);
            if wait > bound_nanos {
                self.count(&projects, true);
                return Decision::Refuse(Duration::from_nanos(wait));
            }
            let at = now.saturating_add(wait);
            let all: Vec<&Bucket> = global
                .into_iter()
                .chain(chosen.iter().map(|b| &**b))
                .collect();
            let mut taken = 0;
            while taken < all.len() && all[taken].take(now, at) {
                taken += 1;
            }
            if taken == all.len() {
                self.count(&projects, false);
                return if wait == 0 {
                    Decision::Admit
                } else {
                    Decision::AdmitAfter(Duration::from_nanos(wait))
                };
            }
            for b in &all[..taken] {
                b.give_back();
            }
        }
        self.count(&projects, true);
        Decision::Refuse(Duration::from_nanos(
            global.map_or(0, |b| b.interval).max(1),
        ))
    }

    fn count(&self, projects: &[&ProjectName], limited: bool) {
        for &p in projects {
            let known = self.counts.read().get(p).cloned();
            let counts = match known {
                Some(c) => c,
                None => {
                    let mut counts = self.counts.write();
                    if counts.len() >= MAX_TRACKED && !counts.contains_key(p) {
                        continue;
                    }
                    counts.entry(p.clone()).or_default().clone()
                }
            };
            let c = if limited {
                &counts.limited
            } else {
                &counts.admitted
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Admitted and limited commits per project, sorted by project (at most
    /// [`MAX_TRACKED`] projects).
    pub fn snapshot(&self) -> Vec<ProjectAdmission> {
        let mut out: Vec<ProjectAdmission> = self
            .counts
            .read()
            .iter()
            .map(|(p, c)| ProjectAdmission {
                project: p.to_string(),
                admitted: c.admitted.load(Ordering::Relaxed),
                limited: c.limited.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.project.cmp(&b.project));
        out
    }

    /// Admits a commit on the caller's thread, sleeping for an admitted wait; a
    /// refusal is [`CommitError::RateLimited`].
    pub(crate) fn admit_blocking(
        &self,
        request: &Request,
        caller: Option<&CallerId>,
        max_wait: Option<Duration>,
    ) -> Result<(), CommitError> {
        match self.decide(request, caller, self.now(), max_wait) {
            Decision::Admit => Ok(()),
            Decision::AdmitAfter(wait) => {
                std::thread::sleep(wait);
                Ok(())
            }
            Decision::Refuse(retry_after) => Err(CommitError::RateLimited { retry_after }),
        }
    }
}

/// The distinct projects `request` writes (DDL: the project it changes).
fn projects_of(request: &Request) -> Vec<&ProjectName> {
    let mut out: Vec<&ProjectName> = Vec::new();
    let mut add = |p| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    match request {
        Request::Transaction(tx) => {
            for m in &tx.mutations {
                let ns = match m {
                    Mutation::KvPut { ns, .. }
                    | Mutation::KvDelete { ns, .. }
                    | Mutation::KvAdd { ns, .. }
                    | Mutation::KvSub { ns, .. }
                    | Mutation::TableInsert { ns, .. }
                    | Mutation::TableUpsert { ns, .. }
                    | Mutation::TableUpdate { ns, .. }
                    | Mutation::TableDelete { ns, .. } => ns,
                };
                add(&ns.project);
            }
        }
        Request::Ddl(ddl) => match ddl {
            Ddl::CreateProject { project } => add(project),
            Ddl::CreateScope { ns } | Ddl::CreateTable { ns, .. } | Ddl::DropTable { ns, .. } => {
                add(&ns.project)
            }
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aedb_model::{KvKey, KvValue, Namespace, Transaction};

    const MS: u64 = 1_000_000;

    fn put(project: &str) -> Request {
        let ns = Namespace::parse(project, "s").unwrap();
        Request::Transaction(Transaction::new().kv_put(
            &ns,
            KvKey::new("k").unwrap(),
            KvValue::new("v").unwrap(),
        ))
    }

    #[test]
    fn a_commit_that_waited_on_one_bucket_is_charged_to_the_others_when_it_runs() {
        // Project: 10/s, burst 1. Callers: 1/s each, burst 1. Five callers commit twice
        // at t = 0 (their second commits wait on their own buckets until about t = 1 s),
        // then commits without a caller bucket arrive at t = 1 s: the project's rate
        // must hold across both, so no two commits of the project run within 100 ms.
        let limits = RateLimits::new()
            .per_project(RateLimit::per_second(10).burst(1))
            .per_caller(RateLimit::per_second(1).burst(1))
            .max_wait(Duration::from_secs(5));
        let l = Limiter::new(limits);
        let mut runs_at = Vec::new();
        let mut run = |d: Decision, t: u64| match d {
            Decision::Admit => runs_at.push(t),
            Decision::AdmitAfter(w) => runs_at.push(t + w.as_nanos() as u64),
            Decision::Refuse(_) => {}
        };
        for _ in 0..2 {
            for c in 0..5 {
                let caller = CallerId::new(&format!("c{c}")).unwrap();
                run(l.decide(&put("p"), Some(&caller), 0, None), 0);
            }
        }
        for _ in 0..3 {
            run(l.decide(&put("p"), None, 1_000 * MS, None), 1_000 * MS);
        }
        runs_at.sort_unstable();
        for pair in runs_at.windows(2) {
            assert!(pair[1] - pair[0] >= 100 * MS, "{runs_at:?}");
        }
    }

    #[test]
    fn projects_beyond_the_tracked_ones_share_one_token_per_commit() {
        let limits = RateLimits::new()
            .per_project(RateLimit::per_second(1).burst(1))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(limits);
        for i in 0..MAX_TRACKED {
            let _ = l.decide(&put(&format!("p{i}")), None, 0, None);
        }
        // Two untracked projects in one commit map to the same overflow bucket: the
        // commit takes one token, so it is admitted.
        let a = Namespace::parse("overflow-a", "s").unwrap();
        let b = Namespace::parse("overflow-b", "s").unwrap();
        let two = Request::Transaction(
            Transaction::new()
                .kv_put(&a, KvKey::new("k").unwrap(), KvValue::new("v").unwrap())
                .kv_put(&b, KvKey::new("k").unwrap(), KvValue::new("v").unwrap()),
        );
        assert_eq!(l.decide(&two, None, 0, None), Decision::Admit);
    }

    #[test]
    fn limits_whose_tolerance_would_overflow_are_refused() {
        let huge = RateLimits::new()
            .global(RateLimit::new(1, Duration::from_secs(3600)).burst(10_000_000));
        assert!(huge.validate().is_err());
        assert!(
            RateLimits::new()
                .global(RateLimit::per_second(1_000).burst(10_000_000))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_bucket_admits_its_burst_then_one_per_interval() {
        // 10 per second (one per 100 ms), burst 3, fail fast.
        let limits = RateLimits::new()
            .global(RateLimit::per_second(10).burst(3))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(limits);
        let at = |t| l.decide(&put("a"), None, t, None);
        assert_eq!(at(0), Decision::Admit);
        assert_eq!(at(0), Decision::Admit);
        assert_eq!(at(0), Decision::Admit);
        assert_eq!(at(0), Decision::Refuse(Duration::from_millis(100)));
        assert_eq!(at(50 * MS), Decision::Refuse(Duration::from_millis(50)));
        assert_eq!(at(100 * MS), Decision::Admit);
        assert!(matches!(at(100 * MS), Decision::Refuse(_)));
        // After a long idle period the bucket is full again, but holds no more than
        // the burst.
        for _ in 0..3 {
            assert_eq!(at(10_000 * MS), Decision::Admit);
        }
        assert!(matches!(at(10_000 * MS), Decision::Refuse(_)));
        let counts = l.snapshot();
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].admitted, counts[0].limited), (7, 4));
    }

    #[test]
    fn a_waiting_commit_is_admitted_within_the_bound_and_reserves_its_slot() {
        let limits = RateLimits::new()
            .global(RateLimit::per_second(10).burst(1))
            .max_wait(Duration::from_millis(250));
        let l = Limiter::new(limits);
        let at = |t| l.decide(&put("a"), None, t, None);
        assert_eq!(at(0), Decision::Admit);
        assert_eq!(at(0), Decision::AdmitAfter(Duration::from_millis(100)));
        assert_eq!(at(0), Decision::AdmitAfter(Duration::from_millis(200)));
        // The next slot is 300 ms away: beyond the bound.
        assert_eq!(at(0), Decision::Refuse(Duration::from_millis(300)));
        // A per-call bound (a deadline) tightens it.
        assert_eq!(
            l.decide(&put("a"), None, 100 * MS, Some(Duration::from_millis(10))),
            Decision::Refuse(Duration::from_millis(200))
        );
    }

    #[test]
    fn projects_and_callers_have_their_own_buckets() {
        let limits = RateLimits::new()
            .per_project(RateLimit::per_second(1).burst(1))
            .project("vip".parse().unwrap(), RateLimit::per_second(1).burst(2))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(limits);
        assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("a"), None, 0, None),
            Decision::Refuse(_)
        ));
        assert_eq!(l.decide(&put("b"), None, 0, None), Decision::Admit);
        assert_eq!(l.decide(&put("vip"), None, 0, None), Decision::Admit);
        assert_eq!(l.decide(&put("vip"), None, 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("vip"), None, 0, None),
            Decision::Refuse(_)
        ));

        let per_caller = RateLimits::new()
            .per_caller(RateLimit::per_second(1).burst(1))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(per_caller);
        let alice = CallerId::new("alice").unwrap();
        let bob = CallerId::new("bob").unwrap();
        assert_eq!(l.decide(&put("a"), Some(&alice), 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("a"), Some(&alice), 0, None),
            Decision::Refuse(_)
        ));
        assert_eq!(l.decide(&put("a"), Some(&bob), 0, None), Decision::Admit);
        // Anonymous commits have no caller bucket.
        assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
    }

    #[test]
    fn a_refusal_by_one_bucket_takes_no_token_from_the_others() {
        let limits = RateLimits::new()
            .global(RateLimit::per_second(1).burst(2))
            .project("a".parse().unwrap(), RateLimit::per_second(1).burst(1))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(limits);
        assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
        // Project `a` is empty: refused before the global bucket is touched...
        assert!(matches!(
            l.decide(&put("a"), None, 0, None),
            Decision::Refuse(_)
        ));
        // ...so `b` still gets the global bucket's second token.
        assert_eq!(l.decide(&put("b"), None, 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("c"), None, 0, None),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn a_token_handed_back_is_available_again() {
        // What `decide` does when a concurrent commit empties a later bucket between
        // its look and its take.
        let b = Bucket::new(&RateLimit::per_second(1).burst(1));
        assert!(b.take(0, 0));
        assert!(!b.take(0, 0));
        b.give_back();
        assert!(b.take(0, 0));
        assert_eq!(b.wait_at(0), 1_000_000_000);
    }

    #[test]
    fn projects_beyond_the_cap_share_one_bucket_and_are_not_counted() {
        let limits = RateLimits::new()
            .per_project(RateLimit::per_second(1).burst(1))
            .max_wait(Duration::ZERO);
        let l = Limiter::new(limits);
        for i in 0..MAX_TRACKED {
            assert_eq!(
                l.decide(&put(&format!("p{i}")), None, 0, None),
                Decision::Admit
            );
        }
        assert_eq!(l.decide(&put("late1"), None, 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("late2"), None, 0, None),
            Decision::Refuse(_)
        ));
        assert_eq!(l.snapshot().len(), MAX_TRACKED);
    }

    #[test]
    fn changing_the_limits_takes_effect_at_once() {
        let l = Limiter::new(RateLimits::new());
        for _ in 0..100 {
            assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
        }
        l.set_limits(
            RateLimits::new()
                .global(RateLimit::per_second(1).burst(1))
                .max_wait(Duration::ZERO),
        );
        assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
        assert!(matches!(
            l.decide(&put("a"), None, 0, None),
            Decision::Refuse(_)
        ));
        l.set_limits(RateLimits::new());
        assert_eq!(l.decide(&put("a"), None, 0, None), Decision::Admit);
        assert_eq!(l.snapshot()[0].limited, 1);
    }

    #[test]
    fn zero_and_absurd_limits_are_refused() {
        let bad = [
            RateLimits::new().global(RateLimit::per_second(0)),
            RateLimits::new().global(RateLimit::new(1, Duration::ZERO)),
            RateLimits::new().per_project(RateLimit::new(1, Duration::from_secs(2 * 86_400))),
            RateLimits::new().per_caller(RateLimit::per_second(u64::MAX)),
            RateLimits::new().global(RateLimit::per_second(10).burst(0)),
            RateLimits::new().global(RateLimit::per_second(10).burst(u64::MAX)),
            RateLimits::new().max_wait(Duration::from_secs(3600)),
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
        assert_eq!(RateLimit::per_second(1000).effective_burst(), 1000);
        assert_eq!(
            RateLimit::new(1, Duration::from_secs(3600)).effective_burst(),
            1
        );
    }

    #[test]
    fn concurrent_commits_never_exceed_the_burst() {
        let limits = RateLimits::new()
            .global(RateLimit::per_second(1).burst(100))
            .max_wait(Duration::ZERO);
        let l = Arc::new(Limiter::new(limits));
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (l, admitted) = (l.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if l.decide(&put("a"), None, 0, None) == Decision::Admit {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 100);
    }
}
