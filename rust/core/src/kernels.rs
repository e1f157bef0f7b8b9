//! The sparse kernels of one layer, on feature-major activations: row `i` of
//! an activation block holds neuron `i` for all `B` samples of the batch
//! contiguously, so every inner loop runs over `B` contiguous floats.
//!
//! Activations and errors are stored as float32 or bfloat16 ([`Element`]);
//! weights and every accumulation are float32 either way.
//!
//! Parallelism: each output element (a row of activations, or one weight
//! gradient) is computed by exactly one task, in a fixed order, so results do
//! not depend on the number of threads.

use std::ops::Range;

use rayon::prelude::*;

use crate::csc::SparseMatrix;
use crate::precision::{narrow_row, Bf16, Stored};
use crate::simd::{madd, multiversion, Isa};

/// Work (multiply-adds) a rayon task should get at least, to amortize the
/// task overhead.
const TASK_WORK: usize = 1 << 15;

/// Tasks per thread a layer's pass is cut into when it has more work than
/// that: enough for the work stealing to even out the threads, few enough
/// that a task's overhead (its split, its cold start) stays small.
const TASKS_PER_THREAD: usize = 4;

/// Stored entries per task for a pass over `entries` of them that costs
/// `work_per_entry` multiply-adds each.
fn entries_per_task(entries: usize, work_per_entry: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    TASK_WORK
        .div_ceil(work_per_entry.max(1))
        .max(entries / (threads * TASKS_PER_THREAD))
}

/// How many connections ahead the gather kernels prefetch source rows: the
/// rows are scattered, so the hardware prefetcher cannot guess them.
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to bring `src[off..off + n]` into L1 (a hint: no effect on
/// results, never faults).
#[inline(always)]
fn prefetch_row<T>(src: &[T], off: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = src.as_ptr().wrapping_add(off);
        let mut k = 0;
        while k < n {
            // SAFETY: prefetch is a hint; it does not fault even on an
            // invalid address, and `wrapping_add` keeps the arithmetic defined.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(k) as *const i8) };
            k += 64 / std::mem::size_of::<T>();
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, off, n);
}

/// Where a gather kernel prefetches from: the source-row indices starting at
/// the kernel's first entry and running on past its last one into the entries
/// the caller will gather next (the next neuron's), so the rows of the first
/// connections of a neuron or segment are in flight before it starts.
#[derive(Clone, Copy)]
pub struct Lookahead<'a>(&'a [u32]);

impl<'a> Lookahead<'a> {
    /// The entries from `start` on of an index array (a view's whole
    /// `row_idx` or `t_col`).
    pub fn from(indices: &'a [u32], start: usize) -> Self {
        Lookahead(&indices[start.min(indices.len())..])
    }
}

/// The sparse operand of a gather: rows `idx[t]` of `src` (rows of `b`
/// values) weighted by `w[t]`, prefetched by `ahead`.
pub struct Gather<'a, T> {
    idx: &'a [u32],
    w: &'a [f32],
    ahead: Lookahead<'a>,
    src: &'a [T],
    b: usize,
}

impl<T> Clone for Gather<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Gather<'_, T> {}

/// `out[s] = init + Σ_t w[t] · src[idx[t]·b + start + s]` for `s < N`, with the
/// `N` accumulators held in registers; `init = None` adds to `out` instead.
#[inline(always)]
fn axpy_block<I: Isa, T: Stored, const N: usize>(
    out: &mut [f32],
    init: Option<f32>,
    g: Gather<'_, T>,
    start: usize,
) {
    let Gather {
        idx,
        w,
        ahead,
        src,
        b,
    } = g;
    let mut acc = match init {
        Some(v) => [v; N],
        None => out[start..start + N].try_into().expect("block of N"),
    };
    for (t, (&r, &wt)) in idx.iter().zip(w).enumerate() {
        if let Some(&next) = ahead.0.get(t + PREFETCH_AHEAD) {
            prefetch_row(src, next as usize * b + start, N);
        }
        let off = r as usize * b + start;
        let x = &src[off..off + N];
        for l in 0..N {
            acc[l] = madd::<I>(wt, x[l].widen(), acc[l]);
        }
    }
    out[start..start + N].copy_from_slice(&acc);
}

/// One output row of a sparse × dense product, in register-sized blocks.
#[inline(always)]
fn axpy_row<I: Isa, T: Stored>(out: &mut [f32], init: Option<f32>, g: Gather<'_, T>) {
    let b = g.b;
    let mut s = 0;
    // 128 accumulators take 8 of AVX-512's 32 registers; with 16 AVX2
    // registers they would spill
    if I::WIDE {
        while s + 128 <= b {
            axpy_block::<I, T, 128>(out, init, g, s);
            s += 128;
        }
    }
    while s + 64 <= b {
        axpy_block::<I, T, 64>(out, init, g, s);
        s += 64;
    }
    while s + 16 <= b {
        axpy_block::<I, T, 16>(out, init, g, s);
        s += 16;
    }
    while s + 4 <= b {
        axpy_block::<I, T, 4>(out, init, g, s);
        s += 4;
    }
    while s < b {
        axpy_block::<I, T, 1>(out, init, g, s);
        s += 1;
    }
}

multiversion! {
    /// `out = init + Σ_t weights[t] · src_row(idx[t])` (forward: one output
    /// neuron), prefetching by `ahead` (see [`Lookahead`]).
    pub fn gather_axpy<T: Element>(out: &mut [f32], init: f32, idx: &[u32], ahead: Lookahead<'_>, weights: &[f32], src: &[T], b: usize) {
        T::axpy_row::<I>(out, Some(init), Gather { idx, w: weights, ahead, src, b });
    }
}

/// Sums 16 partial sums in a fixed tree: lanes `l` and `l+8`, then `l` and
/// `l+4`, then `l` and `l+2`, then the last two.
#[inline(always)]
fn reduce16(mut acc: [f32; 16]) -> f32 {
    let mut w = 8;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

/// [`reduce16`] of four rows at once, with the same tree per row (hence the
/// same bits), in 4-lane vectors: each row's lanes `l` and `l+8`, then `l`
/// and `l+4` are whole-vector adds; a 4×4 transpose then lines the rows up
/// so that the last two steps add all four rows at once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn reduce4x16(a: &[[f32; 16]; 4]) -> [f32; 4] {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of every x86-64 CPU; the loads read 4 floats
    // inside a 16-float array and the store writes a 4-float array.
    unsafe {
        let q = |r: usize, k: usize| _mm_loadu_ps(a[r][4 * k..4 * k + 4].as_ptr());
        let row = |r: usize| _mm_add_ps(_mm_add_ps(q(r, 0), q(r, 2)), _mm_add_ps(q(r, 1), q(r, 3)));
        let (s0, s1, s2, s3) = (row(0), row(1), row(2), row(3));
        let (lo01, lo23) = (_mm_unpacklo_ps(s0, s1), _mm_unpacklo_ps(s2, s3));
        let (hi01, hi23) = (_mm_unpackhi_ps(s0, s1), _mm_unpackhi_ps(s2, s3));
        // lane k of every row, for k = 0..4
        let (t0, t1) = (_mm_movelh_ps(lo01, lo23), _mm_movehl_ps(lo23, lo01));
        let (t2, t3) = (_mm_movelh_ps(hi01, hi23), _mm_movehl_ps(hi23, hi01));
        let sum = _mm_add_ps(_mm_add_ps(t0, t2), _mm_add_ps(t1, t3));
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sum);
        out
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn reduce4x16(a: &[[f32; 16]; 4]) -> [f32; 4] {
    a.map(reduce16)
}

/// `x[..full]` as 16-float chunks (`full` a multiple of 16).
#[inline(always)]
fn chunks16(x: &[f32], full: usize) -> &[[f32; 16]] {
    x[..full].as_chunks::<16>().0
}

/// Four dot products against the same `d`, 16 lanes at a time: each load of
/// `d` serves four rows and the four accumulators are independent.
#[inline(always)]
fn dot4_f32<I: Isa>(x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32], d: &[f32]) -> [f32; 4] {
    let n = d.len();
    let (dc, dt) = d.as_chunks::<16>();
    let full = dc.len() * 16;
    let (c0, c1, c2, c3) = (
        chunks16(x0, full),
        chunks16(x1, full),
        chunks16(x2, full),
        chunks16(x3, full),
    );
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
    for c in 0..dc.len() {
        let (y, r0, r1, r2, r3) = (&dc[c], &c0[c], &c1[c], &c2[c], &c3[c]);
        for l in 0..16 {
            a0[l] = madd::<I>(r0[l], y[l], a0[l]);
            a1[l] = madd::<I>(r1[l], y[l], a1[l]);
            a2[l] = madd::<I>(r2[l], y[l], a2[l]);
            a3[l] = madd::<I>(r3[l], y[l], a3[l]);
        }
    }
    let (t0, t1, t2, t3) = (&x0[full..n], &x1[full..n], &x2[full..n], &x3[full..n]);
    for (l, y) in dt.iter().enumerate() {
        a0[l] = madd::<I>(t0[l], *y, a0[l]);
        a1[l] = madd::<I>(t1[l], *y, a1[l]);
        a2[l] = madd::<I>(t2[l], *y, a2[l]);
        a3[l] = madd::<I>(t3[l], *y, a3[l]);
    }
    reduce4x16(&[a0, a1, a2, a3])
}

/// One dot product with the lane structure of [`dot4_f32`] (hence the same bits).
#[inline(always)]
fn dot1_f32<I: Isa>(x: &[f32], d: &[f32]) -> f32 {
    let n = d.len();
    let x = &x[..n];
    let mut a = [0.0f32; 16];
    let (dc, dt) = d.as_chunks::<16>();
    let full = dc.len() * 16;
    for (xs, y) in x[..full].as_chunks::<16>().0.iter().zip(dc) {
        for l in 0..16 {
            a[l] = madd::<I>(xs[l], y[l], a[l]);
        }
    }
    for (l, y) in dt.iter().enumerate() {
        a[l] = madd::<I>(x[full + l], *y, a[l]);
    }
    reduce16(a)
}

/// A stored activation type the kernels run on, with its gather and dot product.
pub trait Element: Stored {
    /// One output row of a sparse × dense product (see [`axpy_row`]).
    fn axpy_row<I: Isa>(out: &mut [f32], init: Option<f32>, g: Gather<'_, Self>);
    /// Four dot products against the same `d` (all of `d.len()` values).
    fn dot4<I: Isa>(x0: &[Self], x1: &[Self], x2: &[Self], x3: &[Self], d: &[Self]) -> [f32; 4];
    /// One dot product with the arithmetic of [`Element::dot4`] (the same bits).
    fn dot1<I: Isa>(x: &[Self], d: &[Self]) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    fn axpy_row<I: Isa>(out: &mut [f32], init: Option<f32>, g: Gather<'_, f32>) {
        axpy_row::<I, f32>(out, init, g)
    }
    #[inline(always)]
    fn dot4<I: Isa>(x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32], d: &[f32]) -> [f32; 4] {
        dot4_f32::<I>(x0, x1, x2, x3, d)
    }
    #[inline(always)]
    fn dot1<I: Isa>(x: &[f32], d: &[f32]) -> f32 {
        dot1_f32::<I>(x, d)
    }
}

/// `2W` bfloat16 values as `W` words, value `2l` in the low half of word `l`
/// and value `2l+1` in the high half: the layout `vdpbf16ps` reads.
#[inline(always)]
fn words<const W: usize>(x: &[Bf16]) -> [u32; W] {
    let x = &x[..2 * W];
    if cfg!(target_endian = "little") {
        // SAFETY: `Bf16` is a transparent `u16`, so `x` is `4W` readable
        // bytes; the read is unaligned and any bits are a valid `u32`.
        unsafe { std::ptr::read_unaligned(x.as_ptr().cast::<[u32; W]>()) }
    } else {
        std::array::from_fn(|l| x[2 * l].0 as u32 | (x[2 * l + 1].0 as u32) << 16)
    }
}

#[inline(always)]
fn words16(x: &[Bf16; 32]) -> [u32; 16] {
    words::<16>(x)
}

/// [`axpy_block`] on bfloat16 rows, `2W` values at a time read as `W` words:
/// one AND and one shift widen 32 values (instead of two instructions per
/// 16), into accumulators of the even and the odd values. Each value's sum is
/// the one [`axpy_block`] computes, in the same order (the same bits).
#[inline(always)]
fn axpy_block_bf16<I: Isa, const W: usize>(
    out: &mut [f32],
    init: Option<f32>,
    g: Gather<'_, Bf16>,
    start: usize,
) {
    let Gather {
        idx,
        w,
        ahead,
        src,
        b,
    } = g;
    let (mut even, mut odd) = match init {
        Some(v) => ([v; W], [v; W]),
        None => (
            std::array::from_fn(|l| out[start + 2 * l]),
            std::array::from_fn(|l| out[start + 2 * l + 1]),
        ),
    };
    for (t, (&r, &wt)) in idx.iter().zip(w).enumerate() {
        if let Some(&next) = ahead.0.get(t + PREFETCH_AHEAD) {
            prefetch_row(src, next as usize * b + start, 2 * W);
        }
        let off = r as usize * b + start;
        let x = words::<W>(&src[off..off + 2 * W]);
        for l in 0..W {
            let (o, e) = halves(x[l]);
            even[l] = madd::<I>(wt, e, even[l]);
            odd[l] = madd::<I>(wt, o, odd[l]);
        }
    }
    for l in 0..W {
        out[start + 2 * l] = even[l];
        out[start + 2 * l + 1] = odd[l];
    }
}

/// The 16 lanes `vdpbf16ps` accumulates over `rows` (each `d.len()` values)
/// against `d`: the lanes of the portable [`Element::dot4`] of [`Bf16`].
///
/// # Safety
/// The CPU must have avx512f, avx512bw and avx512bf16; the caller is
/// compiled with them (the AVX512-BF16 variant), so that the intrinsics inline.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn bf16_lanes<const R: usize>(rows: [&[Bf16]; R], d: &[Bf16]) -> [[f32; 16]; R] {
    use std::arch::x86_64::*;
    let n = d.len();
    let full = n / 32 * 32;
    #[inline(always)]
    unsafe fn load(x: &[Bf16]) -> __m512bh {
        let x = &x[..32];
        // SAFETY: reads the 64 bytes of `x` (any bits are valid bfloat16s),
        // on a CPU with avx512f (the caller's contract).
        unsafe { std::mem::transmute(_mm512_loadu_si512(x.as_ptr().cast())) }
    }
    // SAFETY (the intrinsics): the CPU has avx512f, avx512bw and avx512bf16 (the
    // caller's contract).
    unsafe {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut c = 0;
        while c < full {
            let y = load(&d[c..]);
            for r in 0..R {
                acc[r] = _mm512_dpbf16_ps(acc[r], load(&rows[r][c..n]), y);
            }
            c += 32;
        }
        if full < n {
            // the last values, zeros past them: a masked load reads only the
            // values the mask names (the others are neither read nor faulted on)
            let mask: __mmask32 = (1u32 << (n - full)) - 1;
            let tail = |x: &[Bf16]| -> __m512bh {
                let x = &x[full..n];
                std::mem::transmute(_mm512_maskz_loadu_epi16(mask, x.as_ptr().cast()))
            };
            let y = tail(d);
            for r in 0..R {
                acc[r] = _mm512_dpbf16_ps(acc[r], tail(rows[r]), y);
            }
        }
        let mut lanes = [[0.0f32; 16]; R];
        for r in 0..R {
            _mm512_storeu_ps(lanes[r].as_mut_ptr(), acc[r]);
        }
        lanes
    }
}

/// Widens the high and the low halves of a word (exact).
#[inline(always)]
fn halves(w: u32) -> (f32, f32) {
    (f32::from_bits(w & 0xffff_0000), f32::from_bits(w << 16))
}

/// `acc[l] += x[2l+1]·y[2l+1]`, then `+= x[2l]·y[2l]`, for 32 values: the
/// arithmetic of AVX512-BF16's `vdpbf16ps` (a product of two bfloat16 values
/// is exact in float32, so the fused and the separate multiply-add agree).
#[inline(always)]
fn pair_madd<I: Isa>(acc: &mut [f32; 16], x: &[u32; 16], y: &[u32; 16]) {
    for l in 0..16 {
        let ((xo, xe), (yo, ye)) = (halves(x[l]), halves(y[l]));
        acc[l] = madd::<I>(xe, ye, madd::<I>(xo, yo, acc[l]));
    }
}

/// `x`'s values from `start` (fewer than 32) followed by zeros: a last chunk.
#[inline(always)]
fn padded32(x: &[Bf16], start: usize, n: usize) -> [Bf16; 32] {
    let mut out = [Bf16(0); 32];
    out[..n - start].copy_from_slice(&x[start..n]);
    out
}

impl Element for Bf16 {
    #[inline(always)]
    fn axpy_row<I: Isa>(out: &mut [f32], init: Option<f32>, g: Gather<'_, Bf16>) {
        let b = g.b;
        let mut s = 0;
        // as `axpy_row`: 128 accumulators fit AVX-512's registers, not AVX2's
        if I::WIDE {
            while s + 128 <= b {
                axpy_block_bf16::<I, 64>(out, init, g, s);
                s += 128;
            }
        }
        while s + 64 <= b {
            axpy_block_bf16::<I, 32>(out, init, g, s);
            s += 64;
        }
        while s + 16 <= b {
            axpy_block_bf16::<I, 8>(out, init, g, s);
            s += 16;
        }
        while s + 4 <= b {
            axpy_block_bf16::<I, 2>(out, init, g, s);
            s += 4;
        }
        while s < b {
            axpy_block::<I, Bf16, 1>(out, init, g, s);
            s += 1;
        }
    }

    /// Sixteen lanes over chunks of 32 values, lane `l` taking values `2l+1`
    /// and `2l` of each chunk (a last, partial chunk padded with zeros); the
    /// lanes are then summed by the tree of [`reduce16`].
    #[inline(always)]
    fn dot4<I: Isa>(x0: &[Bf16], x1: &[Bf16], x2: &[Bf16], x3: &[Bf16], d: &[Bf16]) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        if I::BF16 {
            let n = d.len();
            // SAFETY: only the AVX512-BF16 variant has `I::BF16`, and it runs
            // only on CPUs that reported avx512f and avx512bf16.
            let lanes = unsafe { bf16_lanes([&x0[..n], &x1[..n], &x2[..n], &x3[..n]], d) };
            return reduce4x16(&lanes);
        }
        let n = d.len();
        let (dc, _) = d.as_chunks::<32>();
        let full = dc.len() * 32;
        let rows = [&x0[..n], &x1[..n], &x2[..n], &x3[..n]];
        let chunks = rows.map(|x| x[..full].as_chunks::<32>().0);
        let mut acc = [[0.0f32; 16]; 4];
        for (c, y) in dc.iter().enumerate() {
            let y = words16(y);
            for r in 0..4 {
                pair_madd::<I>(&mut acc[r], &words16(&chunks[r][c]), &y);
            }
        }
        if full < n {
            let y = words16(&padded32(d, full, n));
            for r in 0..4 {
                pair_madd::<I>(&mut acc[r], &words16(&padded32(rows[r], full, n)), &y);
            }
        }
        reduce4x16(&acc)
    }

    #[inline(always)]
    fn dot1<I: Isa>(x: &[Bf16], d: &[Bf16]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if I::BF16 {
            // SAFETY: as in `dot4`.
            let [lanes] = unsafe { bf16_lanes([&x[..d.len()]], d) };
            return reduce16(lanes);
        }
        let n = d.len();
        let (dc, _) = d.as_chunks::<32>();
        let full = dc.len() * 32;
        let mut acc = [0.0f32; 16];
        for (xs, y) in x[..full].as_chunks::<32>().0.iter().zip(dc) {
            pair_madd::<I>(&mut acc, &words16(xs), &words16(y));
        }
        if full < n {
            let y = words16(&padded32(d, full, n));
            pair_madd::<I>(&mut acc, &words16(&padded32(x, full, n)), &y);
        }
        reduce16(acc)
    }
}

multiversion! {
    /// `grad[t] = ⟨src_row(idx[t]), d⟩` for the connections of one output neuron.
    pub fn dots<T: Element>(grad: &mut [f32], idx: &[u32], src: &[T], d: &[T], b: usize) {
        let d = &d[..b];
        let row = |t: usize| {
            let off = idx[t] as usize * b;
            &src[off..off + b]
        };
        let mut t = 0;
        while t + 4 <= idx.len() {
            for &ahead in idx.iter().skip(t + PREFETCH_AHEAD).take(4) {
                prefetch_row(src, ahead as usize * b, b);
            }
            grad[t..t + 4].copy_from_slice(&T::dot4::<I>(row(t), row(t + 1), row(t + 2), row(t + 3), d));
            t += 4;
        }
        for (g, t) in grad[t..idx.len()].iter_mut().zip(t..) {
            *g = T::dot1::<I>(row(t), d);
        }
    }
}

/// A float32 row for [`in_f32`] to compute in when rows are stored narrower
/// (empty when they are float32).
fn scratch<T: Stored>(b: usize) -> Vec<f32> {
    match T::PRECISION {
        crate::precision::Precision::Float32 => Vec::new(),
        _ => vec![0.0; b],
    }
}

multiversion! {
    /// `dst[k] = T::narrow(src[k])`, compiled for the CPU's vector width.
    pub fn narrow<T: Stored>(dst: &mut [T], src: &[f32]) {
        narrow_row(dst, src);
    }
}

/// Runs `f` on `row` as float32 values: in place when the row is float32,
/// else in `scratch` (see [`scratch`]), rounded into the row afterwards. `f`
/// must write every value: the scratch holds an earlier row's.
#[inline]
pub(crate) fn in_f32<T: Stored>(row: &mut [T], scratch: &mut [f32], f: impl FnOnce(&mut [f32])) {
    match T::as_f32_mut(row) {
        Some(r) => f(r),
        None => {
            let s = &mut scratch[..row.len()];
            f(s);
            narrow(row, s);
        }
    }
}

/// Forward pass of one layer: `out[j] = bias[j] + Σ_i W[i,j] · input[i]` for
/// every output row, then `epilogue(j, row, dfac_row)` on the finished row
/// (activation, dropout), in float32, before the row (and `dfac`'s, which has
/// one row per output too) is stored as `O`.
pub fn forward<T: Element, O: Stored, E>(
    w: &SparseMatrix,
    bias: &[f32],
    input: &[T],
    b: usize,
    out: &mut [O],
    dfac: Option<&mut [O]>,
    epilogue: E,
) where
    E: Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync,
{
    let n_out = w.n_out();
    let run = |cols: Range<usize>, (z, mut d): (&mut [O], Option<&mut [O]>)| {
        let (mut zs, mut ds) = (scratch::<O>(b), scratch::<O>(b));
        for (j, z) in cols.clone().zip(z.chunks_mut(b)) {
            let (rows, vals) = w.column(j);
            let ahead = Lookahead::from(w.row_idx(), w.col_ptr()[j]);
            let d = d
                .as_deref_mut()
                .map(|d| &mut d[(j - cols.start) * b..][..b]);
            in_f32(z, &mut zs, |z| {
                gather_axpy(z, bias[j], rows, ahead, vals, input, b);
                match d {
                    Some(d) => in_f32(d, &mut ds, |d| epilogue(j, z, Some(d))),
                    None => epilogue(j, z, None),
                }
            });
        }
    };
    let out = (&mut out[..n_out * b], dfac.map(|d| &mut d[..n_out * b]));
    par_rows_by_nnz(
        w.col_ptr(),
        0..n_out,
        out,
        b,
        entries_per_task(w.nnz(), b),
        &run,
    );
}

/// Output blocks that can be cut between rows of `b` floats, so that tasks
/// own disjoint rows.
trait SplitRows: Sized + Send {
    fn split_rows(self, rows: usize, b: usize) -> (Self, Self);
}

impl<T: Send> SplitRows for &mut [T] {
    fn split_rows(self, rows: usize, b: usize) -> (Self, Self) {
        self.split_at_mut(rows * b)
    }
}

impl<'a, T: Send> SplitRows for (&'a mut [T], Option<&'a mut [T]>) {
    fn split_rows(self, rows: usize, b: usize) -> (Self, Self) {
        let (a0, a1) = self.0.split_at_mut(rows * b);
        match self.1 {
            Some(d) => {
                let (d0, d1) = d.split_at_mut(rows * b);
                ((a0, Some(d0)), (a1, Some(d1)))
            }
            None => ((a0, None), (a1, None)),
        }
    }
}

/// Runs `f(rows, out_rows)` over disjoint ranges of rows holding about
/// `per_task` stored entries each (`ptr` is a compressed row pointer), by
/// recursive halving of the entries with `rayon::join`: tasks get equal work
/// even when SET has grown hub neurons, and nothing is allocated. Which rows
/// a task gets does not change any result.
fn par_rows_by_nnz<T, F>(
    ptr: &[usize],
    rows: Range<usize>,
    out: T,
    b: usize,
    per_task: usize,
    f: &F,
) where
    T: SplitRows,
    F: Fn(Range<usize>, T) + Sync,
{
    let work = ptr[rows.end] - ptr[rows.start];
    if rows.len() <= 1 || work <= per_task.max(1) {
        f(rows, out);
        return;
    }
    let half = ptr[rows.start] + work / 2;
    let mid = (rows.start + ptr[rows.clone()].partition_point(|&p| p <= half))
        .clamp(rows.start + 1, rows.end - 1);
    let (lo, hi) = out.split_rows(mid - rows.start, b);
    rayon::join(
        || par_rows_by_nnz(ptr, rows.start..mid, lo, b, per_task, f),
        || par_rows_by_nnz(ptr, mid..rows.end, hi, b, per_task, f),
    );
}

/// Write access to the weight gradients for tasks that each own a disjoint
/// set of positions (the backward pass writes position `t_pos[t]` for the
/// transposed entries `t` of its own input rows; `t_pos` is a permutation of
/// `0..nnz`, see [`SparseMatrix::t_pos`]).
#[derive(Clone, Copy)]
pub struct Scatter {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: a `Scatter` is only handed to tasks that write disjoint positions
// (see the type's comment), and it does not outlive the borrow it came from.
unsafe impl Send for Scatter {}
unsafe impl Sync for Scatter {}

impl Scatter {
    fn new(grad: &mut [f32]) -> Self {
        Scatter {
            ptr: grad.as_mut_ptr(),
            len: grad.len(),
        }
    }

    /// Stores `v` at position `p`.
    ///
    /// # Safety
    /// No other task may access position `p` during the kernel.
    #[inline(always)]
    unsafe fn write(&self, p: usize, v: f32) {
        assert!(
            p < self.len,
            "gradient position {p} out of range {}",
            self.len
        );
        // SAFETY: in bounds by the assert; exclusive by the caller's contract.
        unsafe { *self.ptr.add(p) = v };
    }
}

/// What [`backward_row`] reads of one layer: its transposed view, values,
/// the output deltas, and where the weight gradients go.
pub struct BackwardLayer<'a, T> {
    row_ptr: &'a [usize],
    t_col: &'a [u32],
    t_pos: &'a [u32],
    values: &'a [f32],
    delta: &'a [T],
    b: usize,
    grad: Scatter,
}

impl<T> Clone for BackwardLayer<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for BackwardLayer<'_, T> {}

/// Floats of delta rows one backward segment re-reads from L1 (16 KiB).
const BACKWARD_SEGMENT_FLOATS: usize = 4096;
const MAX_SEGMENT: usize = 64;

multiversion! {
    /// The backward step of one input neuron `i` with connections to outputs
    /// `cols` (values at `pos`): `acc = Σ_t W · delta_out[cols[t]]` (input
    /// gradient, `acc` is the neuron's delta row), then the weight gradients
    /// `⟨x, delta_out[cols[t]]⟩` stored at `pos[t]`, segment by segment: the
    /// dot products re-read the delta rows the accumulation just brought into
    /// L1, so each comes from L2 or memory once. Finally `acc ⊙= dfac`.
    pub fn backward_row<T: Element>(i: usize, acc: &mut [f32], dfac: &[T], x: &[T], layer: &BackwardLayer<'_, T>) {
        let BackwardLayer { row_ptr, t_col, t_pos, values, delta, b, grad } = *layer;
        let (cols, pos) = (&t_col[row_ptr[i]..row_ptr[i + 1]], &t_pos[row_ptr[i]..row_ptr[i + 1]]);
        // segments of connections whose delta rows fit in L1 together
        let seg = (BACKWARD_SEGMENT_FLOATS / b.max(1)).clamp(4, MAX_SEGMENT);
        let x = &x[..b];
        let mut w = [0.0f32; MAX_SEGMENT];
        let mut init = Some(0.0);
        if cols.is_empty() {
            acc[..b].fill(0.0);
        }
        for (k, (cols, pos)) in cols.chunks(seg).zip(pos.chunks(seg)).enumerate() {
            let ahead = Lookahead::from(t_col, row_ptr[i] + k * seg);
            // gathered first: independent loads overlap, unlike loads feeding the FMAs
            for (w, &p) in w.iter_mut().zip(pos) {
                *w = values[p as usize];
            }
            let w = &w[..cols.len()];
            T::axpy_row::<I>(acc, init, Gather { idx: cols, w, ahead, src: delta, b });
            init = None;
            let row = |t: usize| &delta[cols[t] as usize * b..][..b];
            let mut t = 0;
            while t + 4 <= cols.len() {
                let g = T::dot4::<I>(row(t), row(t + 1), row(t + 2), row(t + 3), x);
                for (k, v) in g.into_iter().enumerate() {
                    // SAFETY: position `pos[t + k]` belongs to this input row only (see `Scatter`).
                    unsafe { grad.write(pos[t + k] as usize, v) };
                }
                t += 4;
            }
            for (t, &p) in pos.iter().enumerate().skip(t) {
                // SAFETY: as above.
                unsafe { grad.write(p as usize, T::dot1::<I>(row(t), x)) };
            }
        }
        for (a, f) in acc[..b].iter_mut().zip(&dfac[..b]) {
            *a *= f.widen();
        }
    }
}

/// Backward pass of one layer. Always the weight gradient at the existing
/// connections, `grad[k] = ⟨input[row(k)], delta_out[col(k)]⟩`; with
/// `delta_in = Some((rows, dfac))` also the input gradient
/// `rows[i] = (Σ_j W[i,j] · delta_out[j]) ⊙ dfac[i]`, where `dfac` is the
/// derivative of the previous activation times the dropout mask and scale.
/// The 1/B of the mean is already in `delta_out`.
///
/// With the input gradient the two share one pass over the transposed view
/// (each `delta_out` row is loaded once per connection, not twice); without
/// it (the first layer) the weight gradient runs by output neuron.
pub fn backward<T: Element>(
    w: &SparseMatrix,
    input: &[T],
    delta_out: &[T],
    b: usize,
    grad: &mut [f32],
    delta_in: Option<(&mut [T], &[T])>,
) {
    let Some((delta_in, dfac)) = delta_in else {
        weight_grad(w, input, delta_out, b, grad);
        return;
    };
    let n_in = w.n_in();
    let layer = BackwardLayer {
        row_ptr: w.row_ptr(),
        t_col: w.t_col(),
        t_pos: w.t_pos(),
        values: w.values(),
        delta: delta_out,
        b,
        grad: Scatter::new(&mut grad[..w.nnz()]),
    };
    let per_task = entries_per_task(w.nnz(), 2 * b);
    let run = |rows: Range<usize>, block: &mut [T]| {
        let mut scratch = scratch::<T>(b);
        for (i, row) in rows.zip(block.chunks_mut(b)) {
            let x = &input[i * b..(i + 1) * b];
            in_f32(row, &mut scratch, |acc| {
                backward_row(i, acc, &dfac[i * b..(i + 1) * b], x, &layer)
            });
        }
    };
    let delta_in = &mut delta_in[..n_in * b];
    par_rows_by_nnz(layer.row_ptr, 0..n_in, delta_in, b, per_task, &run);
}

/// Weight gradient at the existing connections only (SDDMM):
/// `grad[k] = ⟨input[row(k)], delta[col(k)]⟩` for every stored connection `k`.
/// The 1/B of the mean is already in `delta`. Work is split into equal runs
/// of connections, whatever the column lengths (SET grows hub neurons).
pub fn weight_grad<T: Element>(
    w: &SparseMatrix,
    input: &[T],
    delta: &[T],
    b: usize,
    grad: &mut [f32],
) {
    let nnz = w.nnz();
    if nnz == 0 {
        return;
    }
    let (col_ptr, row_idx) = (w.col_ptr(), w.row_idx());
    let chunk = (TASK_WORK / b).max(64);
    grad[..nnz]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, g)| {
            let k0 = c * chunk;
            let k1 = k0 + g.len();
            // the column holding connection k0: last j with col_ptr[j] <= k0
            let mut j = col_ptr.partition_point(|&p| p <= k0) - 1;
            let mut k = k0;
            while k < k1 {
                while col_ptr[j + 1] <= k {
                    j += 1;
                }
                let end = col_ptr[j + 1].min(k1);
                dots(
                    &mut g[k - k0..end - k0],
                    &row_idx[k..end],
                    input,
                    &delta[j * b..(j + 1) * b],
                    b,
                );
                k = end;
            }
        });
}

/// Rows whose sums [`bias_grad`] interleaves.
const SUM_ROWS: usize = 8;

/// Bias gradient: `grad[j] = Σ_s delta[j, s]` (the 1/B is already in `delta`),
/// each row added in sample order, the bits of `Iterator::sum`.
pub fn bias_grad<T: Stored>(delta: &[T], b: usize, grad: &mut [f32]) {
    let n = grad.len();
    assert!(
        delta.len() >= n * b,
        "delta holds fewer than {n} rows of {b}"
    );
    grad.par_chunks_mut(SUM_ROWS)
        .enumerate()
        .with_min_len((TASK_WORK / (b * SUM_ROWS)).max(1))
        .for_each(|(c, g)| {
            let rows = &delta[c * SUM_ROWS * b..][..g.len() * b];
            if g.len() == SUM_ROWS {
                eight_row_sums(rows, b, g);
            } else {
                for (out, row) in g.iter_mut().zip(rows.chunks_exact(b)) {
                    *out = row.iter().map(|v| v.widen()).sum();
                }
            }
        });
}

/// `out[k] = Σ_s rows[k·b + s]` for eight rows, every row summed in order
/// from −0.0 as `Iterator::sum` does. One row alone is a chain of dependent
/// additions; the eight chains overlap in the pipeline.
fn eight_row_sums<T: Stored>(rows: &[T], b: usize, out: &mut [f32]) {
    let (r0, r) = rows.split_at(b);
    let (r1, r) = r.split_at(b);
    let (r2, r) = r.split_at(b);
    let (r3, r) = r.split_at(b);
    let (r4, r) = r.split_at(b);
    let (r5, r) = r.split_at(b);
    let (r6, r7) = r.split_at(b);
    let mut a = [-0.0f32; SUM_ROWS];
    let lanes = r0
        .iter()
        .zip(r1)
        .zip(r2)
        .zip(r3)
        .zip(r4)
        .zip(r5)
        .zip(r6)
        .zip(r7);
    for (((((((x0, x1), x2), x3), x4), x5), x6), x7) in lanes {
        a[0] += x0.widen();
        a[1] += x1.widen();
        a[2] += x2.widen();
        a[3] += x3.widen();
        a[4] += x4.widen();
        a[5] += x5.widen();
        a[6] += x6.widen();
        a[7] += x7.widen();
    }
    out.copy_from_slice(&a);
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the math of the reference
mod tests {
    use super::*;
    use crate::init::{random_sparse, WeightInit};
    use crate::rng::Rng;

    fn dense(w: &SparseMatrix) -> Vec<Vec<f32>> {
        let mut d = vec![vec![0.0f32; w.n_out()]; w.n_in()];
        for j in 0..w.n_out() {
            let (rows, vals) = w.column(j);
            for (&i, &v) in rows.iter().zip(vals) {
                d[i as usize][j] = v;
            }
        }
        d
    }

    fn random_block(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn four_row_reduction_has_the_bits_of_the_one_row_tree() {
        let mut rng = Rng::new(3);
        for _ in 0..if cfg!(miri) { 20 } else { 1000 } {
            // mixed magnitudes, so that any other association shows in the bits
            let rows: [[f32; 16]; 4] = std::array::from_fn(|_| {
                std::array::from_fn(|_| {
                    (rng.uniform(-1.0, 1.0) * 10f64.powi(rng.below(8) as i32 - 4)) as f32
                })
            });
            let four = reduce4x16(&rows);
            for (r, row) in rows.iter().enumerate() {
                assert_eq!(
                    four[r].to_bits(),
                    reduce16(*row).to_bits(),
                    "row {r} of {rows:?}"
                );
            }
        }
    }

    #[test]
    fn kernels_match_naive_dense_reference() {
        let mut rng = Rng::new(9);
        // Under Miri (CI runs these kernels there to check the unsafe code),
        // small cases that still take every path: rows of 4+ connections
        // (the 4-row dot products) and a remainder, several batch widths.
        let cases: &[(usize, usize, u64, usize)] = if cfg!(miri) {
            &[(13, 9, 60, 5), (9, 12, 70, 17), (5, 5, 0, 3)]
        } else {
            &[
                (37, 23, 200, 1),
                (50, 40, 700, 67),
                (64, 8, 512, 130),
                (5, 5, 0, 3),
            ]
        };
        for &(n_in, n_out, nnz, b) in cases {
            let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
            let wd = dense(&w);
            let bias = random_block(&mut rng, n_out);
            let x = random_block(&mut rng, n_in * b);
            let delta = random_block(&mut rng, n_out * b);
            let dfac = random_block(&mut rng, n_in * b);

            let mut z = vec![0.0; n_out * b];
            forward(&w, &bias, &x, b, &mut z, None, |_, _, _| {});
            for j in 0..n_out {
                for s in 0..b {
                    let r: f32 = bias[j] + (0..n_in).map(|i| wd[i][j] * x[i * b + s]).sum::<f32>();
                    assert!(close(z[j * b + s], r), "forward {j} {s}");
                }
            }

            let mut din = vec![0.0; n_in * b];
            let mut g2 = vec![0.0; w.nnz()];
            backward(&w, &x, &delta, b, &mut g2, Some((&mut din, &dfac)));
            for i in 0..n_in {
                for s in 0..b {
                    let r: f32 = (0..n_out).map(|j| wd[i][j] * delta[j * b + s]).sum::<f32>()
                        * dfac[i * b + s];
                    assert!(close(din[i * b + s], r), "input grad {i} {s}");
                }
            }

            let mut g = vec![0.0; w.nnz()];
            weight_grad(&w, &x, &delta, b, &mut g);
            for j in 0..n_out {
                for k in w.col_ptr()[j]..w.col_ptr()[j + 1] {
                    let i = w.row_idx()[k] as usize;
                    let r: f32 = (0..b).map(|s| x[i * b + s] * delta[j * b + s]).sum();
                    assert!(close(g[k], r), "weight grad {i} {j}");
                    assert!(close(g2[k], r), "fused weight grad {i} {j}");
                }
            }

            let mut gb = vec![0.0; n_out];
            bias_grad(&delta, b, &mut gb);
            for j in 0..n_out {
                assert!(close(gb[j], delta[j * b..(j + 1) * b].iter().sum()));
            }
        }
    }

    fn to_bf16(x: &[f32]) -> Vec<Bf16> {
        x.iter().map(|&v| Bf16::from_f32(v)).collect()
    }

    fn widened(x: &[Bf16]) -> Vec<f32> {
        x.iter().map(|v| v.to_f32()).collect()
    }

    /// The bfloat16 kernels on bfloat16 values compute what the float32
    /// kernels compute on the same (widened) values: forward outputs, input
    /// gradients and bias gradients to the bit once rounded, since they add in
    /// the same order; weight gradients (the pair lanes of `vdpbf16ps`) within
    /// float32 rounding.
    #[test]
    fn bfloat16_kernels_compute_the_float32_kernels_on_the_same_values() {
        let mut rng = Rng::new(11);
        let cases: &[(usize, usize, u64, usize)] = if cfg!(miri) {
            &[(13, 9, 60, 5), (9, 12, 70, 37)]
        } else {
            &[
                (37, 23, 200, 1),
                (50, 40, 700, 67),
                (64, 8, 512, 130),
                (30, 30, 300, 32),
            ]
        };
        for &(n_in, n_out, nnz, b) in cases {
            let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
            let bias = random_block(&mut rng, n_out);
            let x = to_bf16(&random_block(&mut rng, n_in * b));
            let delta = to_bf16(&random_block(&mut rng, n_out * b));
            let dfac = to_bf16(&random_block(&mut rng, n_in * b));
            let (xf, deltaf, dfacf) = (widened(&x), widened(&delta), widened(&dfac));

            let relu = |_: usize, z: &mut [f32], d: Option<&mut [f32]>| {
                let d = d.unwrap();
                for (z, d) in z.iter_mut().zip(d) {
                    *d = if *z > 0.0 { 1.0 } else { 0.5 };
                    *z *= *d;
                }
            };
            let (mut z, mut d) = (vec![Bf16(0); n_out * b], vec![Bf16(0); n_out * b]);
            forward(&w, &bias, &x, b, &mut z, Some(&mut d), relu);
            let (mut zf, mut df) = (vec![0.0f32; n_out * b], vec![0.0f32; n_out * b]);
            forward(&w, &bias, &xf, b, &mut zf, Some(&mut df), relu);
            assert_eq!(z, to_bf16(&zf), "forward, {n_in}x{n_out} b {b}");
            assert_eq!(d, to_bf16(&df), "derivative factors");
            let mut logits = vec![0.0f32; n_out * b];
            forward(&w, &bias, &x, b, &mut logits, None, |_, _, _| {});
            forward(&w, &bias, &xf, b, &mut zf, None, |_, _, _| {});
            assert_eq!(logits, zf, "float32 outputs of bfloat16 inputs");

            let (mut din, mut g) = (vec![Bf16(0); n_in * b], vec![0.0f32; w.nnz()]);
            backward(&w, &x, &delta, b, &mut g, Some((&mut din, &dfac)));
            let (mut dinf, mut gf) = (vec![0.0f32; n_in * b], vec![0.0f32; w.nnz()]);
            backward(&w, &xf, &deltaf, b, &mut gf, Some((&mut dinf, &dfacf)));
            assert_eq!(din, to_bf16(&dinf), "input gradient");
            let mut g1 = vec![0.0f32; w.nnz()];
            weight_grad(&w, &x, &delta, b, &mut g1);
            assert_eq!(g, g1, "both weight-gradient paths have the same bits");
            for k in 0..w.nnz() {
                assert!(close(g[k], gf[k]), "weight grad {k}: {} vs {}", g[k], gf[k]);
            }

            let (mut gb, mut gbf) = (vec![0.0; n_out], vec![0.0; n_out]);
            bias_grad(&delta, b, &mut gb);
            bias_grad(&deltaf, b, &mut gbf);
            assert_eq!(gb, gbf, "bias gradients");
        }
    }

    /// The bfloat16 dot product's lanes, written out: lane `l` adds value
    /// `2l+1`, then `2l`, of each chunk of 32 (zeros past the end), and the
    /// lanes are summed by the 16-lane tree.
    #[test]
    fn the_bfloat16_dot_product_is_the_pair_lane_sum() {
        let mut rng = Rng::new(12);
        for n in [1, 5, 31, 32, 33, 64, 100, 128] {
            let x = to_bf16(&random_block(&mut rng, n));
            let y = to_bf16(&random_block(&mut rng, n));
            let mut lanes = [0.0f32; 16];
            for c in (0..n).step_by(32) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    for s in [c + 2 * l + 1, c + 2 * l] {
                        if s < n {
                            *lane = x[s].to_f32().mul_add(y[s].to_f32(), *lane);
                        }
                    }
                }
            }
            let want = reduce16(lanes);
            let one = Bf16::dot1::<crate::simd::BaselineIsa>(&x, &y);
            assert_eq!(one.to_bits(), want.to_bits(), "n {n}");
            let four = Bf16::dot4::<crate::simd::BaselineIsa>(&x, &x, &x, &x, &y);
            for v in four {
                assert_eq!(v.to_bits(), want.to_bits(), "n {n}, four rows");
            }
        }
    }

    #[test]
    fn bias_gradients_have_the_bits_of_a_sum_in_order() {
        let mut rng = Rng::new(5);
        for (n, b) in [(1, 1), (7, 3), (8, 128), (21, 37)] {
            let delta = random_block(&mut rng, n * b);
            let mut grad = vec![f32::NAN; n];
            bias_grad(&delta, b, &mut grad);
            for j in 0..n {
                let want: f32 = delta[j * b..(j + 1) * b].iter().sum();
                assert_eq!(grad[j].to_bits(), want.to_bits(), "row {j} of {n}, b {b}");
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let mut rng = Rng::new(4);
        let (n_in, n_out, b, nnz) = if cfg!(miri) {
            (30, 20, 9, 200)
        } else {
            (300, 200, 96, 6000)
        };
        let w = random_sparse(n_in, n_out, nnz, WeightInit::HeUniform, &mut rng).unwrap();
        let bias = random_block(&mut rng, n_out);
        let x = random_block(&mut rng, n_in * b);
        let delta = random_block(&mut rng, n_out * b);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut z = vec![0.0; n_out * b];
                forward(&w, &bias, &x, b, &mut z, None, |_, _, _| {});
                let mut g = vec![0.0; w.nnz()];
                weight_grad(&w, &x, &delta, b, &mut g);
                let mut din = vec![0.0; n_in * b];
                let mut g2 = vec![0.0; w.nnz()];
                backward(
                    &w,
                    &x,
                    &delta,
                    b,
                    &mut g2,
                    Some((&mut din, &vec![1.0; n_in * b])),
                );
                (z, g, din, g2)
            })
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(5));

        let (xb, deltab) = (to_bf16(&x), to_bf16(&delta));
        let run16 = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut z = vec![Bf16(0); n_out * b];
                forward(&w, &bias, &xb, b, &mut z, None, |_, _, _| {});
                let mut g = vec![0.0; w.nnz()];
                weight_grad(&w, &xb, &deltab, b, &mut g);
                let mut din = vec![Bf16(0); n_in * b];
                let ones = vec![Bf16::from_f32(1.0); n_in * b];
                let mut g2 = vec![0.0; w.nnz()];
                backward(&w, &xb, &deltab, b, &mut g2, Some((&mut din, &ones)));
                (z, g, din, g2)
            })
        };
        assert_eq!(run16(1), run16(2));
        assert_eq!(run16(1), run16(5));
    }
}
