//! The bundled demo workload: a small model-serving loop (load weights, then four workers
//! tokenizing requests, running a forward pass of matmul and softmax layers, and a recursive beam
//! search), so `profiler demo` has nested, recursive and multi-threaded calls to show.
//!
//! Every function is `#[inline(never)]` so it exists in the binary for the probes.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

const DIM: usize = 32;
const LAYERS: usize = 4;
const WORKERS: usize = 4;

/// The `--func` specs `profiler demo` traces.
pub(crate) const DEMO_FUNCS: &[&str] = &["profiler_user::demo::*"];

/// Model weights: one DIM x DIM matrix per layer.
pub struct Model {
    layers: Vec<Vec<f32>>,
}

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
pub fn tokenize(text: &str) -> Vec<usize> {
    text.split_whitespace()
        .map(|w| w.bytes().map(usize::from).sum::<usize>() % DIM)
        .collect()
}

#[inline(never)]
pub fn matmul(weights: &[f32], input: &[f32]) -> Vec<f32> {
    (0..DIM)
        .map(|row| {
            (0..DIM)
                .map(|col| weights[row * DIM + col] * input[col])
                .sum()
        })
        .collect()
}

#[inline(never)]
pub fn softmax(values: &mut [f32]) {
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
pub fn forward(model: &Model, tokens: &[usize]) -> Vec<f32> {
    let mut hidden = vec![0.0f32; DIM];
    for &t in tokens {
        hidden[t] += 1.0;
    }
    for layer in &model.layers {
        hidden = matmul(layer, &hidden);
        softmax(&mut hidden);
    }
    hidden
}

/// Best score reachable in `depth` more steps (recursive).
#[inline(never)]
pub fn beam_search(scores: &[f32], depth: u32) -> f32 {
    if depth == 0 {
        return 0.0;
    }
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    best + beam_search(&scores[1..], depth - 1)
}

#[inline(never)]
pub fn handle_request(model: &Model, text: &str) -> f32 {
    let tokens = tokenize(text);
    let scores = forward(model, &tokens);
    beam_search(&scores, 3)
}

/// Serves requests on four threads for `seconds`.
#[inline(never)]
pub fn workload(seconds: f64) {
    let model = load_model();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    std::thread::scope(|s| {
        for worker in 0..WORKERS {
            let model = &model;
            s.spawn(move || {
                let mut served = 0u64;
                while Instant::now() < until {
                    let text = format!("request {served} from worker {worker} about tensors");
                    black_box(handle_request(model, black_box(&text)));
                    served += 1;
                    // Requests arrive at a steady rate rather than back to back.
                    std::thread::sleep(Duration::from_micros(500));
                }
            });
        }
    });
}
