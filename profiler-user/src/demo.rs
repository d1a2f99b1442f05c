//! The bundled demo workload: a small model-serving loop with the faults this profiler exists to
//! find, so that `profiler demo` (at `--level full`) shows each family at work:
//! - **a slow function**: `load_model` reads its weights for 50 ms, and one request in 64 stalls
//!   in `postprocess` for 5 ms (its p99);
//! - **a leak**: `cache_response` keeps no pointer to one 256-byte block per 16 requests
//!   (definitely lost), beside a session table that only grows (reachable, growing);
//! - **a contended lock**: every fourth request updates shared metrics under one mutex, and
//!   every 16th update flushes them (4 ms) with the mutex still held;
//! - **a lock order that could deadlock**: `rotate_logs` takes the log lock, then the metrics
//!   lock; `snapshot_metrics` takes them the other way round (never at once, so the demo never
//!   hangs; the threads family reports the cycle);
//! - **classified errors**: a CUDA-out-of-memory error printed the way PyTorch prints it, and a
//!   connection to a closed port refused;
//! - **hot code** for the flame graph: `matmul` in `forward`.
//!
//! Four workers serve requests at a steady rate. Every function is `#[inline(never)]` so it
//! exists in the binary for the probes.

use std::{
    hint::black_box,
    io::Write as _,
    net::TcpStream,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

const DIM: usize = 128;
const LAYERS: usize = 6;
const WORKERS: usize = 4;

/// The `--func` specs `profiler demo` traces: the request and the slow start, not the hot
/// leaves (a probe on `matmul` would cost more than `matmul`); the CPU samples show the rest.
pub(crate) const DEMO_FUNCS: &[&str] = &[
    "profiler_user::demo::load_model",
    "profiler_user::demo::handle_request",
];

/// Model weights: one DIM x DIM matrix per layer.
pub struct Model {
    layers: Vec<Vec<f32>>,
}

/// A pthread mutex, so that the threads family sees who takes it in which order.
struct Lock(std::cell::UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads; it is only used through
// pthread_mutex_lock/unlock.
unsafe impl Sync for Lock {}

impl Lock {
    const fn new() -> Self {
        Self(std::cell::UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER))
    }

    fn lock(&self) -> Guard<'_> {
        // SAFETY: a statically initialised mutex that lives for the program.
        unsafe { libc::pthread_mutex_lock(self.0.get()) };
        Guard(self)
    }
}

struct Guard<'a>(&'a Lock);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the mutex (taken in `Lock::lock`).
        unsafe { libc::pthread_mutex_unlock(self.0.0.get()) };
    }
}

/// The shared metrics, and the log, each behind its own lock.
static METRICS_LOCK: Lock = Lock::new();
static LOG_LOCK: Lock = Lock::new();
static SERVED: AtomicU64 = AtomicU64::new(0);
static LATENCY_NS: AtomicU64 = AtomicU64::new(0);

/// Sessions, never expired: a table that only grows (every block reachable).
#[expect(
    clippy::vec_box,
    reason = "each session is its own allocation, as a server's would be"
)]
static SESSIONS: std::sync::Mutex<Vec<Box<[u8; 128]>>> = std::sync::Mutex::new(Vec::new());

#[inline(never)]
pub fn load_model() -> Model {
    let layers = (0..LAYERS)
        .map(|l| {
            (0..DIM * DIM)
                .map(|i| ((i * 31 + l * 7) % 17) as f32 / 17.0 - 0.5)
                .collect()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // reading weights from disk
    Model { layers }
}

#[inline(never)]
pub fn tokenize(text: &str, tokens: &mut [usize; 16]) -> usize {
    let mut n = 0;
    for w in text.split_whitespace().take(tokens.len()) {
        tokens[n] = w.bytes().map(usize::from).sum::<usize>() % DIM;
        n += 1;
    }
    n
}

#[inline(never)]
pub fn matmul(weights: &[f32], input: &[f32; DIM], output: &mut [f32; DIM]) {
    for (row, out) in output.iter_mut().enumerate() {
        *out = (0..DIM)
            .map(|col| weights[row * DIM + col] * input[col])
            .sum();
    }
}

#[inline(never)]
pub fn softmax(values: &mut [f32; DIM]) {
    let max = values.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

#[inline(never)]
pub fn forward(model: &Model, tokens: &[usize]) -> [f32; DIM] {
    let mut hidden = [0.0f32; DIM];
    let mut next = [0.0f32; DIM];
    for &t in tokens {
        hidden[t] += 1.0;
    }
    for layer in &model.layers {
        matmul(layer, &hidden, &mut next);
        softmax(&mut next);
        std::mem::swap(&mut hidden, &mut next);
    }
    hidden
}

/// Best score reachable in `depth` more steps (recursive).
#[inline(never)]
pub fn beam_search(scores: &[f32], depth: u32) -> f32 {
    if depth == 0 || scores.is_empty() {
        return 0.0;
    }
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    best + beam_search(&scores[1..], depth - 1)
}

/// Turns scores into a response; one request in 64 waits on a slow downstream service.
#[inline(never)]
pub fn postprocess(request: u64, score: f32) -> f32 {
    if request % 64 == 63 {
        std::thread::sleep(Duration::from_millis(5));
    }
    score * 0.5
}

/// Caches a response: one in 16 is kept by nothing (the leak), and every 8th request opens a
/// session that is never closed.
#[inline(never)]
pub fn cache_response(request: u64, score: f32) {
    if request.is_multiple_of(16) {
        let mut block = vec![0u8; 256];
        block[0] = score as u8;
        // The only pointer goes: definitely lost.
        std::mem::forget(black_box(block));
    }
    if request.is_multiple_of(8) {
        let session = Box::new([request as u8; 128]);
        SESSIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }
}

/// Adds a request's latency to the shared metrics, under the metrics lock (contended: every
/// worker takes it, and every 16th record flushes the metrics while still holding it).
#[inline(never)]
pub fn record_metrics(latency: f64) {
    let _m = METRICS_LOCK.lock();
    let served = SERVED.fetch_add(1, Ordering::Relaxed);
    LATENCY_NS.fetch_add((latency * 1e9) as u64, Ordering::Relaxed);
    let mut spin = 0u64;
    for i in 0..2_000u64 {
        spin = spin.wrapping_add(black_box(i));
    }
    black_box(spin);
    if served % 16 == 15 {
        flush_metrics();
    }
}

/// Writes the metrics out (4 ms, a slow disk), called with the metrics lock held: the other
/// workers' records queue behind it, so the lock is contended on any machine, however many
/// cores it has.
#[inline(never)]
pub fn flush_metrics() {
    std::thread::sleep(Duration::from_millis(4));
}

/// Log lock, then metrics lock.
#[inline(never)]
pub fn rotate_logs() {
    let _log = LOG_LOCK.lock();
    let _m = METRICS_LOCK.lock();
    black_box(SERVED.load(Ordering::Relaxed));
}

/// Metrics lock, then log lock: the other order.
#[inline(never)]
pub fn snapshot_metrics() {
    let _m = METRICS_LOCK.lock();
    let _log = LOG_LOCK.lock();
    black_box(SERVED.load(Ordering::Relaxed));
}

#[inline(never)]
pub fn handle_request(model: &Model, request: u64, text: &str) -> f32 {
    let started = Instant::now();
    let mut tokens = [0usize; 16];
    let n = tokenize(text, &mut tokens);
    let scores = forward(model, &tokens[..n]);
    let score = postprocess(request, beam_search(&scores, 3));
    cache_response(request, score);
    if request.is_multiple_of(4) {
        record_metrics(started.elapsed().as_secs_f64());
    }
    score
}

/// The errors a model server runs into, once each: an out-of-memory error printed as PyTorch
/// prints it, and a connection to a port nothing listens on.
#[inline(never)]
pub fn report_errors() {
    let _ = writeln!(
        std::io::stderr(),
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total \
         capacity; 14.21 GiB already allocated; 1.02 GiB free; 14.50 GiB reserved in total by \
         PyTorch)"
    );
    let _ = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
        Duration::from_millis(200),
    );
}

/// Serves requests on four threads for `seconds`.
#[inline(never)]
pub fn workload(seconds: f64) {
    let model = load_model();
    // The two lock orders, one after the other: a cycle, never a deadlock.
    std::thread::scope(|s| {
        s.spawn(rotate_logs);
    });
    std::thread::scope(|s| {
        s.spawn(snapshot_metrics);
    });
    report_errors();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| {
        for worker in 0..WORKERS {
            let model = &model;
            let worker_thread = std::thread::Builder::new().name(format!("worker-{worker}"));
            let spawned = worker_thread.spawn_scoped(s, move || {
                let mut served = 0u64;
                let mut text = String::with_capacity(64);
                while Instant::now() < until {
                    text.clear();
                    let _ = std::fmt::Write::write_fmt(
                        &mut text,
                        format_args!("request {served} from worker {worker} about tensors"),
                    );
                    black_box(handle_request(model, served, black_box(&text)));
                    served += 1;
                    // Requests arrive at a steady rate rather than back to back.
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            if let Err(e) = spawned {
                eprintln!("demo: could not start worker {worker}: {e}");
            }
        }
        // The server's main thread waits out the run (rather than in the join, which would
        // read as a 3-second lock wait).
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    });
}
