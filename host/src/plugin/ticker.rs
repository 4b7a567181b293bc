//! The clock of plugin deadlines: a thread that advances the engine's epoch every
//! [`EPOCH_TICK`] while plugin code may be running, and sleeps while none is.
//!
//! wasmtime counts a call's CPU deadline in epochs, so the epoch only has to move while a call
//! is in flight. Ticking every millisecond regardless kept an idle host waking 1,000 times a
//! second (2.4% of a core here, as much as the whole pipeline at 2,000 events/s). Each call
//! holds a [`Busy`] guard; the ticker keeps ticking while any guard is held and for
//! [`KEEP_TICKING`] after the last one (a batch's calls follow each other closely), then parks
//! until the next guard wakes it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the engine's epoch advances while plugin code runs; per-call CPU deadlines are
/// counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long the ticker keeps ticking after the last call ended before it parks.
const KEEP_TICKING: Duration = Duration::from_millis(5);

#[derive(Default)]
pub struct Ticker {
    /// Calls in flight (guards held).
    busy: AtomicUsize,
    /// The ticker thread is parked, or about to park: a new guard must unpark it.
    parked: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    /// Epochs advanced so far (what the tests observe).
    ticks: AtomicUsize,
}

/// Held while plugin code may run: the epoch advances (and deadlines count) meanwhile.
pub struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, SeqCst);
    }
}

impl Ticker {
    /// Start ticking `engine`'s epoch on a thread of its own, until [`Ticker::stop`].
    pub fn start(engine: Engine) -> std::io::Result<Arc<Ticker>> {
        let ticker = Arc::new(Ticker::default());
        let running = ticker.clone();
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || running.run(&engine))?;
        let _ = ticker.thread.set(thread.thread().clone());
        Ok(ticker)
    }

    /// A guard for one call (or instantiation) of plugin code.
    pub fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, SeqCst);
        // The ticker sets `parked` before it checks `busy` for the last time: either it sees
        // this call, or this call sees it parked (both sequentially consistent).
        if self.parked.load(SeqCst) {
            self.unpark();
        }
        Busy(self)
    }

    pub fn stop(&self) {
        self.stop.store(true, SeqCst);
        self.unpark();
    }

    /// How many times the epoch has advanced.
    pub fn ticks(&self) -> usize {
        self.ticks.load(SeqCst)
    }

    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    fn run(&self, engine: &Engine) {
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(SeqCst) {
            if self.busy.load(SeqCst) > 0 {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= KEEP_TICKING {
                self.parked.store(true, SeqCst);
                // A guard taken before `parked` was set is seen here; one taken after unparks
                // (an unpark before the park makes the park return at once).
                if self.busy.load(SeqCst) == 0 && !self.stop.load(SeqCst) {
                    std::thread::park();
                }
                self.parked.store(false, SeqCst);
                idle_since = None;
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
            self.ticks.fetch_add(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn ticks_only_while_busy_and_wakes_for_each_call() {
        let ticker = Ticker::start(Engine::default()).unwrap();
        // Idle: parked after KEEP_TICKING, and no tick while parked.
        assert!(wait_until(|| ticker.parked.load(SeqCst)));
        let parked_at = ticker.ticks();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), parked_at, "no tick while idle");
        // Busy: ticking again, however long the call.
        for _ in 0..3 {
            let busy = ticker.busy();
            let from = ticker.ticks();
            assert!(
                wait_until(|| ticker.ticks() >= from + 20),
                "ticks while busy"
            );
            drop(busy);
            assert!(wait_until(|| ticker.parked.load(SeqCst)), "parks again");
        }
        ticker.stop();
    }

    #[test]
    fn many_short_calls_never_leave_a_call_without_ticks() {
        // Calls started just as the ticker parks must still wake it (no lost wake-up).
        let ticker = Ticker::start(Engine::default()).unwrap();
        for i in 0..200 {
            std::thread::sleep(Duration::from_micros(4_000 + 100 * (i % 20)));
            let _busy = ticker.busy();
            let from = ticker.ticks();
            assert!(wait_until(|| ticker.ticks() > from), "call {i} got no tick");
        }
        ticker.stop();
    }
}
