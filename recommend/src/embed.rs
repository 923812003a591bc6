//! Item vectors from the co-visitation graph: positive pointwise mutual information of the
//! (symmetrised) pair weights, factored by a randomised truncated SVD (Halko, Martinsson and
//! Tropp: a Gaussian sketch, two power iterations, an eigendecomposition of the small
//! projected matrix). Chosen over implicit ALS because it has one knob (the dimensions),
//! needs no learning rate or regularisation to tune, is deterministic for a seed, and costs
//! a few sparse-times-dense passes: it can be rebuilt every minute on one core.
//!
//! Pure: edges in, vectors out.

use std::collections::HashMap;

/// Item number and its vector (unit length), for items that have any pair.
pub type Vectors = Vec<(u32, Vec<f32>)>;

/// A symmetric sparse matrix in compressed rows over dense row numbers `0..rows`.
struct Sparse {
    starts: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
}

impl Sparse {
    fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// `self` times the dense `rows x width` matrix `x` (row-major).
    fn times(&self, x: &[f32], width: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows() * width];
        for (target, bounds) in out.chunks_mut(width.max(1)).zip(self.starts.windows(2)) {
            let (from, to) = (bounds[0], bounds[1]);
            for (column, value) in self.columns[from..to].iter().zip(&self.values[from..to]) {
                let column = *column as usize;
                let source = &x[column * width..(column + 1) * width];
                for (t, s) in target.iter_mut().zip(source) {
                    *t += value * s;
                }
            }
        }
        out
    }
}

/// The embedding of every item with at least one pair, `dimensions` long.
pub fn embed(edges: &[(u32, u32, f32)], dimensions: usize, seed: u64) -> Vectors {
    let (items, matrix) = ppmi(edges);
    let rows = items.len();
    if rows == 0 || dimensions == 0 {
        return Vec::new();
    }
    let width = (dimensions + 8).min(rows);
    // Sketch the range of the matrix, sharpened by two power iterations.
    let sketch: Vec<f32> = (0..rows * width)
        .map(|i| gaussian(seed, i as u64))
        .collect();
    let mut basis = matrix.times(&sketch, width);
    for _ in 0..2 {
        orthonormalise(&mut basis, rows, width);
        basis = matrix.times(&basis, width);
    }
    orthonormalise(&mut basis, rows, width);
    // The small matrix B = Q' M Q, and its eigenvectors.
    let projected = matrix.times(&basis, width);
    let mut small = vec![0.0f64; width * width];
    for (q, p) in basis.chunks(width).zip(projected.chunks(width)) {
        for (i, qi) in q.iter().enumerate() {
            for (j, pj) in p.iter().enumerate() {
                small[i * width + j] += f64::from(*qi) * f64::from(*pj);
            }
        }
    }
    let (values, vectors) = symmetric_eigen(small, width);
    let mut order: Vec<usize> = (0..width).collect();
    // The largest positive eigenvalues: negative directions of a PMI matrix say what does
    // not go together, which a cosine neighbour search should not reward.
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    let keep: Vec<usize> = order.into_iter().take(dimensions).collect();
    let scale: Vec<f64> = keep.iter().map(|&k| values[k].max(0.0).sqrt()).collect();

    let mut out = Vec::with_capacity(rows);
    for (row, item) in items.iter().enumerate() {
        let q = &basis[row * width..(row + 1) * width];
        let mut vector: Vec<f32> = keep
            .iter()
            .zip(&scale)
            .map(|(&k, s)| {
                let along: f64 = (0..width)
                    .map(|i| f64::from(q[i]) * vectors[i * width + k])
                    .sum();
                (along * s) as f32
            })
            .collect();
        vector.resize(dimensions, 0.0);
        let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() {
            vector.iter_mut().for_each(|v| *v /= norm);
            out.push((*item, vector));
        }
    }
    out
}

/// Symmetrised weights to positive PMI, with the items' dense row numbers.
fn ppmi(edges: &[(u32, u32, f32)]) -> (Vec<u32>, Sparse) {
    let mut pairs: HashMap<(u32, u32), f32> = HashMap::with_capacity(edges.len() * 2);
    for &(a, b, w) in edges {
        if a == b || w.is_nan() || w <= 0.0 {
            continue;
        }
        *pairs.entry((a, b)).or_default() += w / 2.0;
        *pairs.entry((b, a)).or_default() += w / 2.0;
    }
    let mut items: Vec<u32> = pairs.keys().map(|(a, _)| *a).collect();
    items.sort_unstable();
    items.dedup();
    let row_of: HashMap<u32, usize> = items.iter().enumerate().map(|(r, i)| (*i, r)).collect();
    let mut totals = vec![0.0f64; items.len()];
    for (&(a, _), &w) in &pairs {
        totals[row_of[&a]] += f64::from(w);
    }
    let all: f64 = totals.iter().sum();
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); items.len()];
    for (&(a, b), &w) in &pairs {
        let (ra, rb) = (row_of[&a], row_of[&b]);
        let pmi = (f64::from(w) * all / (totals[ra] * totals[rb])).ln();
        if pmi > 0.0 {
            rows[ra].push((rb as u32, pmi as f32));
        }
    }
    let mut starts = Vec::with_capacity(items.len() + 1);
    let (mut columns, mut values) = (Vec::new(), Vec::new());
    starts.push(0);
    for mut row in rows {
        row.sort_unstable_by_key(|(c, _)| *c);
        for (c, v) in row {
            columns.push(c);
            values.push(v);
        }
        starts.push(columns.len());
    }
    (
        items,
        Sparse {
            starts,
            columns,
            values,
        },
    )
}

/// A standard normal draw from (seed, index): splitmix64 into Box-Muller, so the sketch is
/// the same on every machine and needs no random number generator state.
fn gaussian(seed: u64, index: u64) -> f32 {
    let uniform = |salt: u64| {
        let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u, v) = (uniform(0x51ED), uniform(0xC0FF_EE00));
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// Modified Gram-Schmidt over the columns of a row-major `rows x width` matrix; a column
/// that vanishes stays zero.
fn orthonormalise(matrix: &mut [f32], rows: usize, width: usize) {
    for j in 0..width {
        for k in 0..j {
            let dot: f64 = (0..rows)
                .map(|r| f64::from(matrix[r * width + j]) * f64::from(matrix[r * width + k]))
                .sum();
            for r in 0..rows {
                matrix[r * width + j] -= (dot as f32) * matrix[r * width + k];
            }
        }
        let norm = (0..rows)
            .map(|r| f64::from(matrix[r * width + j]).powi(2))
            .sum::<f64>()
            .sqrt();
        for r in 0..rows {
            matrix[r * width + j] = if norm > 1e-12 {
                (f64::from(matrix[r * width + j]) / norm) as f32
            } else {
                0.0
            };
        }
    }
}

/// Eigenvalues and eigenvectors (columns, row-major) of a small symmetric matrix, by cyclic
/// Jacobi rotations.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    // Symmetrise away rounding in the projection.
    for i in 0..n {
        for j in i + 1..n {
            let mean = (a[i * n + j] + a[j * n + i]) / 2.0;
            a[i * n + j] = mean;
            a[j * n + i] = mean;
        }
    }
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off < 1e-18 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-30 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_decomposition() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let (mut values, _) = symmetric_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-9 && (values[1] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn items_of_one_cluster_embed_closer_than_items_of_another() {
        // Two cliques of five items, one weak bridge between them.
        let mut edges = Vec::new();
        for group in [0u32, 10] {
            for a in group..group + 5 {
                for b in group..group + 5 {
                    if a < b {
                        edges.push((a, b, 5.0));
                    }
                }
            }
        }
        edges.push((4, 10, 0.5));
        let vectors: HashMap<u32, Vec<f32>> = embed(&edges, 4, 7).into_iter().collect();
        let cos = |a: u32, b: u32| -> f32 {
            vectors[&a]
                .iter()
                .zip(&vectors[&b])
                .map(|(x, y)| x * y)
                .sum()
        };
        assert!(
            cos(0, 1) > cos(0, 11) + 0.3,
            "{} vs {}",
            cos(0, 1),
            cos(0, 11)
        );
        assert!(cos(12, 13) > cos(12, 2) + 0.3);
    }
}
