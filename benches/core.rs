//! criterion benches of the core: `analyze` on one realistic 100-point sweep (the seed's pipeline
//! and each method), `analyze_batch` on 100,000 ragged sweeps of 60-100 points (the seed's
//! pipeline, `auto`, every method), and the per-point parts of the batch (one read, libm's `ln`,
//! the detector) over the same 8M points.
//!
//! The sweeps follow `benches/sweeps.py`: plateau, smoothstep descent, exponential explosion,
//! log-normal noise, and the same mix of flat, never-diverging, NaN/inf-tailed,
//! immediately-exploding and negative curves, from a small deterministic generator.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use lrfind::{analyze, analyze_batch, AnalyzeConfig, DivergenceConfig, DivergenceDetector, Method, METHOD_NAMES};

/// SplitMix64: deterministic, good enough for test curves, no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box-Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit(); // (0, 1]: ln stays finite
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// The sweep kinds of `sweeps.py`, with their shares.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    Flat,
    NeverDiverges,
    NanTail,
    InfTail,
    Immediate,
    Negative,
}

const KINDS: [(Kind, f64); 7] = [
    (Kind::Normal, 0.63),
    (Kind::Flat, 0.10),
    (Kind::NeverDiverges, 0.10),
    (Kind::NanTail, 0.05),
    (Kind::InfTail, 0.05),
    (Kind::Immediate, 0.03),
    (Kind::Negative, 0.04),
];

/// One curve's parameters; positions are in decades of LR (x = log10 lr).
struct Curve {
    lo: f64,
    span: f64,
    initial: f64,
    best: f64,
    descent_start: f64,
    descent_width: f64,
    explosion: f64,
    rate: f64,
    tail: f64,
    tail_fill: f64,
    sigma: f64,
    shift: f64,
}

impl Curve {
    fn draw(rng: &mut Rng, kind: Kind) -> Self {
        let lo = rng.uniform(-7.0, -5.0);
        let hi = if kind == Kind::NeverDiverges { rng.uniform(-3.0, -1.5) } else { rng.uniform(0.0, 1.0) };
        let span = hi - lo;
        let initial = if rng.unit() < 0.5 { 10f64.ln() } else { rng.uniform(0.3f64.ln(), 7f64.ln()).exp() };
        let mut c = Curve {
            lo,
            span,
            initial,
            best: initial * rng.uniform(0.05, 0.5),
            descent_start: lo + span * rng.uniform(0.1, 0.4),
            descent_width: span * rng.uniform(0.15, 0.3),
            explosion: 0.0,
            rate: rng.uniform(3.0, 12.0), // e-folds of loss per decade of LR once exploding
            tail: f64::INFINITY,
            tail_fill: 0.0,
            sigma: rng.uniform(0.005, 0.03),
            shift: 0.0,
        };
        c.explosion = c.descent_start + c.descent_width + span * rng.uniform(0.02, 0.12);
        match kind {
            Kind::Normal => {}
            Kind::Flat => (c.descent_start, c.explosion) = (f64::INFINITY, f64::INFINITY),
            Kind::NeverDiverges => c.explosion = f64::INFINITY,
            Kind::NanTail | Kind::InfTail => {
                // e-folds into the explosion where the tail begins
                c.tail = rng.uniform(2.0, 6.0);
                c.tail_fill = if kind == Kind::NanTail { f64::NAN } else { f64::INFINITY };
            }
            Kind::Immediate => {
                (c.best, c.descent_start, c.explosion) = (c.initial, f64::INFINITY, lo);
                c.rate = rng.uniform(15.0, 40.0); // 10x within 1-3 points
            }
            Kind::Negative => c.shift = c.best * rng.uniform(1.5, 3.0),
        }
        c
    }

    /// The noisy loss at `x` (decades of LR).
    fn loss(&self, x: f64, rng: &mut Rng) -> f64 {
        let u = ((x - self.descent_start) / self.descent_width).clamp(0.0, 1.0);
        let drop = u * u * (3.0 - 2.0 * u);
        let exponent = (self.rate * (x - self.explosion)).clamp(0.0, 60.0);
        if exponent > self.tail {
            return self.tail_fill;
        }
        let loss = self.best + (self.initial - self.best) * (1.0 - drop) + self.best * exponent.exp_m1();
        loss * (self.sigma * rng.normal()).exp() - self.shift
    }
}

/// `n` ragged sweeps of 60-100 points in the flat layout: `(lrs, losses, offsets)`.
fn ragged_sweeps(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
    let mut rng = Rng(seed);
    let (mut lrs, mut losses, mut offsets) = (Vec::new(), Vec::new(), vec![0i64]);
    for _ in 0..n {
        let len = 60 + (rng.next_u64() % 41) as usize;
        let pick = rng.unit();
        let mut acc = 0.0;
        let kind = KINDS
            .iter()
            .find(|(_, share)| {
                acc += share;
                pick < acc
            })
            .map_or(Kind::Normal, |k| k.0);
        let c = Curve::draw(&mut rng, kind);
        for i in 0..len {
            let x = c.lo + c.span * i as f64 / (len - 1) as f64;
            lrs.push(10f64.powf(x));
            losses.push(c.loss(x, &mut rng));
        }
        offsets.push(lrs.len() as i64);
    }
    (lrs, losses, offsets)
}

/// One normal sweep over `sweep_lrs(1e-7, 10, 100, exp)` that explodes near its end.
fn one_sweep() -> (Vec<f64>, Vec<f64>) {
    let lrs = lrfind::sweep_lrs(1e-7, 10.0, 100, lrfind::SweepMode::Exp).unwrap();
    let mut rng = Rng(7);
    let c = Curve {
        lo: -7.0,
        span: 8.0,
        initial: 10f64.ln(),
        best: 0.4,
        descent_start: -5.0,
        descent_width: 2.0,
        explosion: -2.5,
        rate: 6.0,
        tail: f64::INFINITY,
        tail_fill: 0.0,
        sigma: 0.01,
        shift: 0.0,
    };
    let losses = lrs.iter().map(|lr| c.loss(lr.log10(), &mut rng)).collect();
    (lrs, losses)
}

/// Runs a fresh seed-pipeline detector over each sweep until it stops: the points kept, in all.
fn kept_points(losses: &[f64], offsets: &[i64]) -> usize {
    offsets
        .windows(2)
        .map(|w| {
            let mut d = DivergenceDetector::new(DivergenceConfig::default()).unwrap();
            losses[w[0] as usize..w[1] as usize].iter().take_while(|&&loss| !d.update(loss)).count()
        })
        .sum()
}

fn config(methods: &[&str]) -> AnalyzeConfig {
    let detector = DivergenceConfig::default();
    let methods = methods.iter().map(|m| Method::from_params(m, &[], detector).unwrap()).collect();
    AnalyzeConfig { methods, ..AnalyzeConfig::default() }
}

fn bench_one(c: &mut Criterion) {
    let (lrs, losses) = one_sweep();
    let mut g = c.benchmark_group("analyze_100pts");
    // "default" keeps its figures comparable across versions: the seed's pipeline, steepest.
    let seed = config(&["steepest"]);
    g.bench_function("default", |b| b.iter(|| analyze(black_box(&lrs), black_box(&losses), &seed)));
    let mut all = vec![("all", config(&METHOD_NAMES))];
    all.extend(METHOD_NAMES.iter().map(|&m| (m, config(&[m]))));
    for (name, cfg) in &all {
        g.bench_function(*name, |b| b.iter(|| analyze(black_box(&lrs), black_box(&losses), cfg)));
    }
    g.finish();
}

fn bench_batch(c: &mut Criterion) {
    let (lrs, losses, offsets) = ragged_sweeps(100_000, 1);
    let cfg = config(&["steepest"]); // the seed's pipeline, as the Python baselines
    println!(
        "batch_100k: {} sweeps, {} points, {} before the stop",
        offsets.len() - 1,
        lrs.len(),
        kept_points(&losses, &offsets)
    );
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();

    let mut g = c.benchmark_group("batch_100k");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(lrs.len() as u64));
    // steepest (the seed's pipeline), auto (`AnalyzeConfig::default()`), and every method (the
    // default of Python's `analyze_batch` and of the command line), on rayon's pool and on one
    // thread.
    let variants = [("", cfg.clone()), ("_auto", config(&["auto"])), ("_all", config(&METHOD_NAMES))];
    for (suffix, cfg) in &variants {
        g.bench_function(format!("analyze_batch{suffix}"), |b| {
            b.iter(|| analyze_batch(&lrs, &losses, &offsets, cfg).unwrap())
        });
    }
    for (suffix, cfg) in &variants {
        g.bench_function(format!("analyze_batch{suffix}_1thread"), |b| {
            b.iter(|| one_thread.install(|| analyze_batch(&lrs, &losses, &offsets, cfg).unwrap()))
        });
    }
    // `minimum` reads no slope: the difference to steepest is its ln + gradient.
    let minimum = config(&["minimum"]);
    g.bench_function("analyze_batch_minimum_1thread", |b| {
        b.iter(|| one_thread.install(|| analyze_batch(&lrs, &losses, &offsets, &minimum).unwrap()))
    });
    // One thread each, over the same points: the per-point parts of the batch, for the breakdown.
    g.bench_function("read_both_1thread", |b| {
        // XOR of the bits: vectorises, so it runs at the speed of memory.
        b.iter(|| black_box(&lrs).iter().zip(black_box(&losses)).fold(0u64, |s, (a, b)| s ^ a.to_bits() ^ b.to_bits()))
    });
    g.bench_function("ln_1thread", |b| b.iter(|| black_box(&lrs).iter().fold(0.0, |s, v| s + v.ln())));
    g.bench_function("detector_1thread", |b| b.iter(|| kept_points(black_box(&losses), &offsets)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = bench_one, bench_batch
}
criterion_main!(benches);
