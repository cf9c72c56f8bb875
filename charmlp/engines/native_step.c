/* FMA in the vector kernels (C11 mode turns it off); copy loops stay inline, not memcpy calls */
#pragma GCC optimize("fp-contract=fast", "no-tree-loop-distribute-patterns")
/* The CharMLP training loop in C (float32, one thread), for charmlp.engines.native.
 *
 * Same maths as charmlp.model.CharMLP + torch.optim (foreach=False): embedding -> Linear ->
 * BatchNorm (batch mean, unbiased std, no eps) or bias -> tanh -> Linear (+ direct x@D),
 * mean cross-entropy; SGD (momentum, weight decay added to the grad) or AdamW (decoupled
 * decay, bias corrections, eps outside the sqrt). Weight decay only on the matrices.
 *
 * Parameters and optimizer state are the caller's tensors (pointers in Net); run() does
 * n whole steps (batches gathered here from their indices), so Python is touched once per
 * n steps.
 *
 * Where the time goes, and why it is spent that way:
 * - for a run, every H-long row (W1, b1, BatchNorm's gain/bias/statistics, W2^T and their
 *   optimizer state) is held in a copy padded with zeros to Hp, a multiple of the vector
 *   width, so every loop along H runs whole vectors with no tails or masks, and the pad
 *   lanes stay exactly zero through every step (their gradients are zero);
 * - the first layer works on each context position's distinct tokens rather than on every
 *   example (first_layer), which at batch 32 skips more than half of its multiply-adds;
 * - W2 is held transposed for a run, so every product with it runs along H;
 * - matmuls are register-tiled kernels in GCC/Clang vector extensions; BatchNorm, tanh and
 *   their gradients are fused per column vector (one pass over the batch in L1), and
 *   tanh (a rational function) and exp (a polynomial) are inline vector code, so the hot
 *   loops run whole vectors with no -ffast-math;
 * - where a product needs horizontal sums (rows of W2^T times rows of h), four are done at
 *   once in the one-at-a-time order (hsum4); the logits are held as (V, B), so softmax loads
 *   a vector of rows (one row per lane) without a transpose.
 * The vector width is the widest the compiler targets: 16 lanes with AVX-512 (-march=native
 * on a CPU that has it), else 8 (AVX2, or two SSE registers per vector elsewhere).
 * The float sums run in another order than torch's; losses agree with the reference loop
 * to about 1e-6 over 200k steps.
 * Built with -DCHARMLP_PROFILE, each phase of a step is timed (charmlp_profile). */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) && defined(__AVX__)
#include <immintrin.h>
#endif

enum { P_C, P_W1, P_B1, P_W2, P_B2, P_D, P_GAIN, P_BIAS, NP };
static const int DECAYED[NP] = {1, 1, 0, 1, 0, 1, 0, 0}; /* 2-D parameters */
static const int H_LAST[NP] = {0, 1, 1, 0, 0, 0, 1, 1};  /* rows of H floats: padded for a run */

typedef struct {
    int64_t V, E, T, H, B;
    int64_t batchnorm, direct;
    int64_t opt;        /* 0 SGD, 1 AdamW */
    int64_t opt_steps;  /* steps taken so far: SGD momentum start, AdamW bias correction */
    double bn_momentum, momentum, weight_decay, beta1, beta2, eps;
    float *param[NP];   /* NULL where the model has no such parameter */
    float *state1[NP];  /* SGD momentum buffer / AdamW exp_avg (NULL when unused) */
    float *state2[NP];  /* AdamW exp_avg_sq */
    float *rmean, *rstd;
} Net;

#if defined(CHARMLP_VL)  /* tests build both widths on any machine this way */
#define VL CHARMLP_VL
#elif defined(__AVX512F__)
#define VL 16
#else
#define VL 8
#endif
typedef float vf __attribute__((vector_size(4 * VL)));    /* GCC/Clang vector extensions: */
typedef int32_t vi __attribute__((vector_size(4 * VL)));  /* one AVX/AVX-512 register each */

int64_t charmlp_lanes(void) { return VL; }

static inline vf load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float x) { return x - (vf){0}; }  /* a broadcast (x - 0 is x, -0 too) */
static inline vf blend(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
/* x > c ? c : x and x < c ? c : x, x NaN staying NaN (min/max return their second operand
 * then): one min/max instruction where the ISA has one at this width, not a compare and an
 * integer blend (measured 1.02-1.03x a step at both widths) */
#if defined(__x86_64__) && defined(__AVX512F__) && VL == 16
static inline vf at_most(vf x, vf c) { return (vf)_mm512_min_ps((__m512)c, (__m512)x); }
static inline vf at_least(vf x, vf c) { return (vf)_mm512_max_ps((__m512)c, (__m512)x); }
#elif defined(__x86_64__) && defined(__AVX__) && VL == 8
static inline vf at_most(vf x, vf c) { return (vf)_mm256_min_ps((__m256)c, (__m256)x); }
static inline vf at_least(vf x, vf c) { return (vf)_mm256_max_ps((__m256)c, (__m256)x); }
#else
static inline vf at_most(vf x, vf c) { return blend(x > c, c, x); }
static inline vf at_least(vf x, vf c) { return blend(x < c, c, x); }
#endif
typedef float v4 __attribute__((vector_size(16)));
static inline float hsum(vf v) {  /* 128-bit quarters added as vectors, then 4 lanes */
    v4 a, b;
    memcpy(&a, &v, sizeof a);
    for (int i = 1; i < VL / 4; i++) {
        memcpy(&b, (const char *)&v + sizeof b * i, sizeof b);
        a += b;
    }
    return (a[0] + a[2]) + (a[1] + a[3]);
}
/* hsum of a, b, c and d into out[0..3], each added in exactly hsum's order, but four at a
 * time: the quarters are transposed so that one vector add does a step of four sums. */
#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
#endif
static inline void hsum4(vf a, vf b, vf c, vf d, float *out) {
#if VL == 16
    const vf ab0 = SHUF(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const vf ab1 = SHUF(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const vf cd0 = SHUF(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const vf cd1 = SHUF(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const vf q0 = SHUF(ab0, cd0, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const vf q1 = SHUF(ab0, cd0, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const vf q2 = SHUF(ab1, cd1, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    const vf q3 = SHUF(ab1, cd1, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const vf s = ((q0 + q1) + q2) + q3;  /* [a's 4 lanes, b's, c's, d's] */
    const vf h = s + SHUF(s, s, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    const vf u = h + SHUF(h, h, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    out[0] = u[0], out[1] = u[4], out[2] = u[8], out[3] = u[12];
#elif VL == 8
    const vf sab = SHUF(a, b, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
    const vf scd = SHUF(c, d, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(c, d, 4, 5, 6, 7, 12, 13, 14, 15);
    const vf hab = sab + SHUF(sab, sab, 2, 3, 0, 1, 6, 7, 4, 5);
    const vf hcd = scd + SHUF(scd, scd, 2, 3, 0, 1, 6, 7, 4, 5);
    const vf uab = hab + SHUF(hab, hab, 1, 0, 3, 2, 5, 4, 7, 6);
    const vf ucd = hcd + SHUF(hcd, hcd, 1, 0, 3, 2, 5, 4, 7, 6);
    out[0] = uab[0], out[1] = uab[4], out[2] = ucd[0], out[3] = ucd[4];
#else
    out[0] = hsum(a), out[1] = hsum(b), out[2] = hsum(c), out[3] = hsum(d);
#endif
}

static inline int64_t round_up(int64_t x) { return (x + VL - 1) / VL * VL; }

/* ---- profiling (compiled in with -DCHARMLP_PROFILE only) ---- */
enum { PH_TOKENS, PH_FIRST_FWD, PH_BN_TANH, PH_OUT_FWD, PH_SOFTMAX, PH_OUT_BWD, PH_BN_BWD,
       PH_FIRST_BWD, PH_EMB_GRAD, PH_OPTIM, NPH };
#ifdef CHARMLP_PROFILE
static double prof[NPH];
static double prof_t;
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define PROF_START() (prof_t = now_s())
#define PROF(ph) do { double t_ = now_s(); prof[ph] += t_ - prof_t; prof_t = t_; } while (0)
#else
#define PROF_START() ((void)0)
#define PROF(ph) ((void)0)
#endif

/* Seconds spent in each phase since the last call (all zero unless built to profile);
 * returns the number of phases. */
int64_t charmlp_profile(double *out) {
#ifdef CHARMLP_PROFILE
    memcpy(out, prof, sizeof prof);
    memset(prof, 0, sizeof prof);
#else
    memset(out, 0, sizeof(double) * NPH);
#endif
    return NPH;
}

/* exp(x) for x in [-87, 88]: Cody-Waite reduction by round(x/ln2) (the 1.5*2^23 trick
 * rounds and leaves n in the low mantissa bits) and a degree-6 polynomial, about 1 ulp.
 * libm's expf/tanhf are calls per element and were half the step time. */
static inline vf vexp_in_range(vf x) {
    const float magic = 12582912.0f;  /* 1.5 * 2^23 */
    vf t = x * splat(1.44269504f) + splat(magic);
    vf n = t - splat(magic);
    vf r = x - n * splat(0.693145752f);  /* ln2 split in hi + lo so r is exact */
    r = r - n * splat(1.42860677e-06f);
    vf p = splat(1.0f / 720.0f);
    p = p * r + splat(1.0f / 120.0f);
    p = p * r + splat(1.0f / 24.0f);
    p = p * r + splat(1.0f / 6.0f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    vi ni = (vi)t - (vi)splat(magic);
    return p * (vf)((ni + 127) << 23);
}

/* exp(x), x clamped to [-87, 88] first */
static inline vf vexp(vf x) {
    x = at_least(x, splat(-87.0f));
    x = at_most(x, splat(88.0f));
    return vexp_in_range(x);
}

/* tanh(x) as x p(x^2) / q(x^2), degrees 13 and 6 (the rational approximation of Eigen's and
 * XLA's float tanh), on x clamped to +-7.9053, where it is within 2.4e-7 of 1. Absolute
 * error under 3e-7 everywhere (libm's tanhf: 1e-7): 11 multiply-adds and one division, about
 * half the cost of 1 - 2 / (exp(2x) + 1), which also needed a series near 0. NaN stays NaN. */
static inline vf vtanh(vf x) {
    const vf c = splat(7.90531110763549805f);
    x = at_least(at_most(x, c), -c);
    const vf x2 = x * x;
    vf p = x2 * splat(-2.76076847742355e-16f) + splat(2.00018790482477e-13f);
    p = x2 * p + splat(-8.60467152213735e-11f);
    p = x2 * p + splat(5.12229709037114e-08f);
    p = x2 * p + splat(1.48572235717979e-05f);
    p = x2 * p + splat(6.37261928875436e-04f);
    p = x2 * p + splat(4.89352455891786e-03f);
    p = x * p;
    vf q = x2 * splat(1.19825839466702e-06f) + splat(1.18534705686654e-04f);
    q = x2 * q + splat(2.26843463243900e-03f);
    q = x2 * q + splat(4.89352518554385e-03f);
    return p / q;
}

/* out[j] = in[j] over n floats, n a multiple of VL: a row of Hp floats copied inline, where a
 * libc call per row (then about 70 a step) cost 0.6% of a step at emb10/hid200 */
static inline void vcopy(int64_t n, const float *restrict in, float *restrict out) {
    for (int64_t j = 0; j < n; j += VL) store(out + j, load(in + j));
}

/* out[j] += in[j] over n floats, n a multiple of VL */
static inline void vadd_to(int64_t n, const float *restrict in, float *restrict out) {
    for (int64_t j = 0; j < n; j += VL) store(out + j, load(out + j) + load(in + j));
}

/* C (M, N) (+)= A (M, K) @ Bm (K, N), N a multiple of VL; A's element (i, k) is
 * A[i*sai + k*sak], so A^T is the same call with the strides swapped (no transposed copy).
 * acc=0 overwrites C instead of adding to it (no memset first); acc=2 treats C as a weight
 * and applies plain SGD with this product as its gradient, C += step * (A@Bm + wd * C), so
 * the gradient is never stored and read back. Register tiles of R rows x Q vectors, so both
 * FMA units stay busy through FMA latency: each loaded vector of Bm serves R rows of A, and
 * C is read and written once per tile instead of once per k. Each element of C is the same
 * sum in the same order whatever tile computes it. */
/* The main tile: GR rows x QMAX vectors, 6 x 4 (24 accumulators) where AVX-512 gives 32
 * registers, 4 x 3 (12) with AVX2's 16 (measured against 6 x 2: 5% faster a step, since
 * Hp = 200 is 25 vectors of 8 and 32 rows split into whole tiles). */
#if VL == 16 && defined(__AVX512F__)
#define GR 6
#define QMAX 4
#else
#define GR 4
#define QMAX 3
#endif
#define UPTO(x, max) ((x) < (max) ? (x) : 1)  /* a tile size below max (dead cases say 1) */
static inline __attribute__((always_inline)) void gemm_tile(
    const int R, const int Q, int64_t i, int64_t j, int64_t K, int64_t N,
    const float *restrict A, int64_t sai, int64_t sak, const float *restrict Bm,
    float *restrict C, int acc, float step, float wd) {
    vf s[GR][QMAX];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++)
            s[r][q] = acc == 1 ? load(C + (i + r) * N + j + VL * q) : splat(0.0f);
    const float *a = A + i * sai;
    const float *b = Bm + j;
    for (int64_t k = 0; k < K; k++) {
        vf bv[QMAX];
        for (int q = 0; q < Q; q++) bv[q] = load(b + k * N + VL * q);
        for (int r = 0; r < R; r++) {
            const vf x = splat(a[r * sai + k * sak]);
            for (int q = 0; q < Q; q++) s[r][q] += x * bv[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) {
            float *c = C + (i + r) * N + j + VL * q;
            if (acc == 2) {  /* torch.optim.SGD: g += wd*p; p += -lr*g */
                const vf p = load(c);
                store(c, p + splat(step) * (s[r][q] + splat(wd) * p));
            } else {
                store(c, s[r][q]);
            }
        }
}

/* Columns j..j+Q*VL of C, all rows: tiles of GR rows, then the rows left over in one tile.
 * Going down the rows with a column block fixed keeps that block of Bm (K x Q vectors) in
 * L1 for every row tile, so a weight larger than L2 streams in once per product. */
static inline __attribute__((always_inline)) void gemm_cols(
    const int Q, int64_t j, int64_t M, int64_t K, int64_t N, const float *restrict A,
    int64_t sai, int64_t sak, const float *restrict Bm, float *restrict C, int acc, float step,
    float wd) {
    int64_t i = 0;
    for (; i + GR <= M; i += GR) gemm_tile(GR, Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd);
    switch (M - i) {
    case 5: gemm_tile(UPTO(5, GR), Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 4: gemm_tile(UPTO(4, GR), Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 3: gemm_tile(UPTO(3, GR), Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 2: gemm_tile(2, Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 1: gemm_tile(1, Q, i, j, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    }
}

static inline __attribute__((always_inline)) void gemm_any(
    int64_t M, int64_t K, int64_t N, const float *restrict A, int64_t sai, int64_t sak,
    const float *restrict Bm, float *restrict C, int acc, float step, float wd) {
    int64_t j = 0;
    for (; j + QMAX * VL <= N; j += QMAX * VL) gemm_cols(QMAX, j, M, K, N, A, sai, sak, Bm, C, acc, step, wd);
    switch ((N - j) / VL) {
    case 3: gemm_cols(UPTO(3, QMAX), j, M, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 2: gemm_cols(UPTO(2, QMAX), j, M, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    case 1: gemm_cols(1, j, M, K, N, A, sai, sak, Bm, C, acc, step, wd); break;
    }
}

static void gemm(int64_t M, int64_t K, int64_t N, const float *restrict A, int64_t sai,
                 int64_t sak, const float *restrict Bm, float *restrict C, int acc) {
    gemm_any(M, K, N, A, sai, sak, Bm, C, acc, 0.0f, 0.0f);
}

/* P (M, N) += step * (A @ Bm + wd * P): a weight gradient applied as plain SGD */
static void gemm_sgd(int64_t M, int64_t K, int64_t N, const float *restrict A, int64_t sai,
                     int64_t sak, const float *restrict Bm, float *restrict P, float step,
                     float wd) {
    gemm_any(M, K, N, A, sai, sak, Bm, P, 2, step, wd);
}

/* C (M, N) (+)= A (M, K) @ Bt (N, K)^T for rows i..i+R, columns j..j+Q: dot products of
 * contiguous rows, R*Q accumulators, so a weight used as W^T needs no transposed copy.
 * K is a multiple of VL (the padded H). */
/* Its register tiles: 6 rows x 4 columns (24 accumulators) with AVX-512's 32 registers,
 * 4 x 3 (12) with AVX2's 16. Each loaded vector is held in a register (IN_REGISTER) for the
 * FMAs that use it: left to itself, GCC folds the loads of one operand into every FMA, which
 * loads 15 vectors per 12 FMAs instead of 7, more than the two loads a cycle the core has
 * (measured: 1.06x a step with 16 lanes, 1.02-1.04x with 8). */
#if QMAX == 4
#define NT_R 6
#define NT_Q 4
#else
#define NT_R 4
#define NT_Q 3
#endif
#if defined(__x86_64__) && defined(__AVX512F__) && VL <= 16
#define IN_REGISTER(v) __asm__("" : "+v"(v))  /* any of the 32 vector registers */
#elif defined(__x86_64__) && defined(__AVX__) && VL <= 8
#define IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define IN_REGISTER(v) ((void)0)  /* a vector wider than a register, or another ISA */
#endif
static inline __attribute__((always_inline)) void nt_tile(
    const int R, const int Q, int64_t i, int64_t j, int64_t K, int64_t N,
    const float *restrict A, const float *restrict Bt, float *restrict C, int acc) {
    vf s[NT_R][NT_Q];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) s[r][q] = splat(0.0f);
    for (int64_t k = 0; k < K; k += VL) {
        vf b[NT_Q];
        for (int q = 0; q < Q; q++) {
            b[q] = load(Bt + (j + q) * K + k);
            IN_REGISTER(b[q]);
        }
        for (int r = 0; r < R; r++) {
            vf a = load(A + (i + r) * K + k);
            IN_REGISTER(a);
            for (int q = 0; q < Q; q++) s[r][q] += a * b[q];
        }
    }
    vf flat[NT_R * NT_Q];
    float sum[NT_R * NT_Q];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) flat[r * Q + q] = s[r][q];
    const int whole = R * Q / 4 * 4;
    for (int k = 0; k < whole; k += 4) hsum4(flat[k], flat[k + 1], flat[k + 2], flat[k + 3], sum + k);
    for (int k = whole; k < R * Q; k++) sum[k] = hsum(flat[k]);
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) {
            float *c = C + (i + r) * N + j + q;
            *c = acc ? *c + sum[r * Q + q] : sum[r * Q + q];
        }
}

static inline __attribute__((always_inline)) void nt_rows(
    const int R, int64_t i, int64_t K, int64_t N, const float *restrict A,
    const float *restrict Bt, float *restrict C, int acc) {
    int64_t j = 0;
    for (; j + NT_Q <= N; j += NT_Q) nt_tile(R, NT_Q, i, j, K, N, A, Bt, C, acc);
    switch (N - j) {
    case 5: nt_tile(R, UPTO(5, NT_Q), i, j, K, N, A, Bt, C, acc); break;
    case 4: nt_tile(R, UPTO(4, NT_Q), i, j, K, N, A, Bt, C, acc); break;
    case 3: nt_tile(R, UPTO(3, NT_Q), i, j, K, N, A, Bt, C, acc); break;
    case 2: nt_tile(R, UPTO(2, NT_Q), i, j, K, N, A, Bt, C, acc); break;
    case 1: nt_tile(R, 1, i, j, K, N, A, Bt, C, acc); break;
    }
}

/* C (M, N) (+)= A (M, K) @ Bt (N, K)^T in tiles of NT_R rows x NT_Q columns. */
static void gemm_nt(int64_t M, int64_t K, int64_t N, const float *restrict A,
                    const float *restrict Bt, float *restrict C, int acc) {
    int64_t i = 0;
    for (; i + NT_R <= M; i += NT_R) nt_rows(NT_R, i, K, N, A, Bt, C, acc);
    switch (M - i) {
    case 5: nt_rows(UPTO(5, NT_R), i, K, N, A, Bt, C, acc); break;
    case 4: nt_rows(UPTO(4, NT_R), i, K, N, A, Bt, C, acc); break;
    case 3: nt_rows(UPTO(3, NT_R), i, K, N, A, Bt, C, acc); break;
    case 2: nt_rows(2, i, K, N, A, Bt, C, acc); break;
    case 1: nt_rows(1, i, K, N, A, Bt, C, acc); break;
    }
}

/* ---- the direct connections (model=bengio): plain loops, off the hot path ---- */

/* out (B, N) += in (B, K) @ W (K, N); out held as (B, N), or as (N, B) when transposed
 * (training's logits) */
static void matmul_acc(int64_t B, int64_t K, int64_t N, const float *restrict in,
                       const float *restrict W, float *restrict out, int transposed) {
    const int64_t bs = transposed ? 1 : N, js = transposed ? B : 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            const float a = in[b * K + k];
            for (int64_t j = 0; j < N; j++) out[b * bs + j * js] += a * W[k * N + j];
        }
}

/* G (K, N) = A^T @ Dy: A (B, K), Dy (N, B) (held transposed), overwriting G */
static void matmul_tn(int64_t B, int64_t K, int64_t N, const float *restrict A,
                      const float *restrict Dy, float *restrict G) {
    memset(G, 0, sizeof(float) * K * N);
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            const float a = A[b * K + k];
            for (int64_t j = 0; j < N; j++) G[k * N + j] += a * Dy[j * B + b];
        }
}

/* out (B, K) = Dy (B, N) @ W (K, N)^T, Dy held transposed (N, B) */
static void matmul_nt_plain(int64_t B, int64_t K, int64_t N, const float *restrict Dy,
                            const float *restrict W, float *restrict out) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0.0f;
            for (int64_t j = 0; j < N; j++) s += Dy[j * B + b] * W[k * N + j];
            out[b * K + k] = s;
        }
}

/* ---- the training step ---- */

typedef struct {
    int64_t Hp;  /* H padded to a multiple of VL */
    float *x, *hpre, *xhat, *h, *logits, *dlog, *dh, *dx;  /* activations and their grads */
    /* (xhat, BatchNorm's normalised hpre, is written over hpre; logits and dlog are (V, B)) */
    float *mean, *std, *inv;  /* batch statistics, inv = 1/std */
    float *padone;  /* (Hp): 0 on the H real columns, 1 on the pad (keeps pad std at 1) */
    float *grad[NP];
    int64_t size[NP];
    /* The first layer by distinct token: per position t, the batch's distinct tokens
     * uniq[t] (first-seen order), each example's index into them slot[t], their count nuniq[t];
     * cu[t] = C[uniq[t]] rows; rows[t] = C[uniq[t]] @ W1_t (umax, Hp) forward, and rows[0]
     * dh summed by token backward; grows one position's (count, E) rows of dC. */
    int32_t *uniq, *slot, *seen;
    int64_t *nuniq;
    float *cu, *rows, *grows;
    float *lt;  /* (V, VL): softmax's logits, a row per lane */
    int64_t umax;  /* min(V, B): the most distinct tokens a position can have */
    /* Plain SGD (no momentum) updates W1 and W2 inside their gradient products (gemm_sgd),
     * each after its last use in the step: fused, with this step's -lr and weight decay. */
    int fused;
    float step, wd;
} Work;

/* The first layer works per context position t on the batch's distinct tokens there (about
 * 13 of 32 examples' worth at batch 32, at most V), because x @ W1 is a sum over t of
 * C[X[:, t]] @ W1_t, where W1_t is W1's rows t*E..(t+1)*E. So
 *   forward  hpre[b] = sum over t of (C[u] @ W1_t)[slot[b]]  (u: the distinct tokens)
 *   backward S = dh summed by token, dW1_t = C[u]^T @ S, dC[u] += S @ W1_t^T
 * which is the same gradient as x^T @ dh and dh @ W1^T (summed in a different order) for
 * less than half their multiply-adds. */
static void group_tokens(const Net *n, Work *w, const int64_t *X) {
    const int64_t T = n->T, B = n->B, E = n->E;
    for (int64_t t = 0; t < T; t++) {
        int32_t *uniq = w->uniq + t * w->umax, *slot = w->slot + t * B;
        float *cu = w->cu + t * w->umax * E;
        int64_t count = 0;
        for (int64_t v = 0; v < n->V; v++) w->seen[v] = -1;
        for (int64_t b = 0; b < B; b++) {
            const int64_t v = X[b * T + t];
            if (w->seen[v] < 0) {
                w->seen[v] = (int32_t)count;
                uniq[count] = (int32_t)v;
                memcpy(cu + count * E, n->param[P_C] + v * E, sizeof(float) * E);
                count++;
            }
            slot[b] = w->seen[v];
        }
        w->nuniq[t] = count;
    }
}

/* rows[t] = C[u] @ W1_t for each position t: hpre's terms, summed where hpre is first
 * read (hpre_cols), not in a pass of their own (1.02x a step at emb10/hid200) */
static void first_layer(const Net *n, Work *w) {
    const int64_t E = n->E, Hp = w->Hp;
    for (int64_t t = 0; t < n->T; t++)
        gemm(w->nuniq[t], E, Hp, w->cu + t * w->umax * E, E, 1, n->param[P_W1] + t * E * Hp,
             w->rows + t * w->umax * Hp, 0);
}

/* hpre's row b, G column vectors from column j, into x: b1 (without BatchNorm) plus each
 * position's row for its token, added in the order t = 0, 1, ... */
static inline __attribute__((always_inline)) void hpre_cols(
    const int G, const Net *n, const Work *w, int64_t b, int64_t j, vf *x) {
    const int64_t Hp = w->Hp, B = n->B;
    const float *r = w->rows + w->slot[b] * Hp + j;
    for (int g = 0; g < G; g++)
        x[g] = n->batchnorm ? load(r + g * VL) : load(n->param[P_B1] + j + g * VL) + load(r + g * VL);
    for (int64_t t = 1; t < n->T; t++) {
        r = w->rows + (t * w->umax + w->slot[t * B + b]) * Hp + j;
        for (int g = 0; g < G; g++) x[g] += load(r + g * VL);
    }
}

/* dW1 = x^T @ dh and dC += the scatter of dh @ W1^T, by distinct token (dC zeroed first) */
static void first_layer_grad(const Net *n, Work *w) {
    const int64_t E = n->E, Hp = w->Hp, B = n->B;
    for (int64_t t = 0; t < n->T; t++) {
        const int64_t count = w->nuniq[t];
        const int32_t *slot = w->slot + t * B, *uniq = w->uniq + t * w->umax;
        float *W1t = n->param[P_W1] + t * E * Hp;
        for (int64_t b = 0, seen = 0; b < B; b++)  /* slots number tokens in first-seen order */
            if (slot[b] == seen) vcopy(Hp, w->dh + b * Hp, w->rows + seen++ * Hp);
            else vadd_to(Hp, w->dh + b * Hp, w->rows + slot[b] * Hp);
        gemm_nt(count, Hp, E, w->rows, W1t, w->grows, 0);  /* uses W1_t before its update */
        if (w->fused)
            gemm_sgd(E, count, Hp, w->cu + t * w->umax * E, 1, E, w->rows, n->param[P_W1] + t * E * Hp,
                     w->step, w->wd);
        else
            gemm(E, count, Hp, w->cu + t * w->umax * E, 1, E, w->rows, w->grad[P_W1] + t * E * Hp, 0);
        for (int64_t i = 0; i < count; i++) {
            float *dc = w->grad[P_C] + uniq[i] * E;
            const float *gr = w->grows + i * E;
            for (int64_t e = 0; e < E; e++) dc[e] += gr[e];
        }
    }
}

/* BatchNorm (batch statistics) and tanh of G column vectors from column j: the B rows of a
 * column vector stay in L1 through mean, variance, normalisation and tanh, and the G
 * columns' sums run side by side (each is a chain of B dependent adds, latency-bound alone). */
static inline __attribute__((always_inline)) void batchnorm_tanh_cols(
    const int G, const Net *n, Work *w, int64_t j) {
    const int64_t B = n->B, Hp = w->Hp;
    const vf ib = splat(1.0f / (float)B), ibm1 = splat(1.0f / (float)(B - 1));
    vf sum[4], mean[4], ss[4], inv[4];
    for (int g = 0; g < G; g++) sum[g] = ss[g] = splat(0.0f);
    for (int64_t b = 0; b < B; b++) {
        vf x[4];
        hpre_cols(G, n, w, b, j, x);
        for (int g = 0; g < G; g++) {
            store(w->hpre + b * Hp + j + g * VL, x[g]);
            sum[g] += x[g];
        }
    }
    for (int g = 0; g < G; g++) mean[g] = sum[g] * ib;
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const vf c = load(w->hpre + b * Hp + j + g * VL) - mean[g];
            ss[g] += c * c;
        }
    for (int g = 0; g < G; g++) {
        const int64_t k = j + g * VL;
        vf var = ss[g] * ibm1, std = var;
        for (int l = 0; l < VL; l++) std[l] = sqrtf(var[l]);
        std += load(w->padone + k);
        inv[g] = splat(1.0f) / std;
        store(w->mean + k, mean[g]);
        store(w->std + k, std);
        store(w->inv + k, inv[g]);
    }
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const int64_t k = b * Hp + j + g * VL;
            const vf xh = (load(w->hpre + k) - mean[g]) * inv[g];
            store(w->xhat + k, xh);
            store(w->h + k, vtanh(load(n->param[P_GAIN] + j + g * VL) * xh + load(n->param[P_BIAS] + j + g * VL)));
        }
}

static void batchnorm_tanh(const Net *n, Work *w) {
    int64_t j = 0;
    for (; j + 4 * VL <= w->Hp; j += 4 * VL) batchnorm_tanh_cols(4, n, w, j);
    for (; j < w->Hp; j += VL) batchnorm_tanh_cols(1, n, w, j);
}

/* Cross-entropy, and its gradient, of rows 0..m (m <= VL) of the logits l, one row per
 * vector lane: every row's max, exp and sum run over v in the one-row order, VL rows per
 * instruction (row by row, the sum's chain of dependent adds and the scalar max were most of
 * softmax's time). Row r's logit v is l[r * rs + v * vs]: training holds the logits as
 * (V, B), so that VL rows are one vector load (rs = 1, vs = B); evaluation as (rows, V).
 * loss[r] = logsumexp(l[r]) - l[r][y[r]]; when d is not NULL, d[r] = (softmax(l[r]) -
 * onehot(y[r])) / B, in l's layout. lt: V * VL floats of scratch. */
static void softmax_rows(int64_t V, int64_t m, int64_t B, const float *l, int64_t rs, int64_t vs,
                         const int64_t *y, float *loss, float *d, float *lt) {
    const int whole = rs == 1 && m == VL;  /* VL rows side by side in memory */
    for (int64_t v = 0; v < V; v++)
        if (whole) store(lt + v * VL, load(l + v * vs));
        else for (int64_t r = 0; r < VL; r++) lt[v * VL + r] = r < m ? l[r * rs + v * vs] : 0.0f;
    vf mx = load(lt);
    for (int64_t v = 1; v < V; v++) {
        const vf x = load(lt + v * VL);
        mx = at_least(mx, x);
    }
    vf s = splat(0.0f);
    for (int64_t v = 0; v < V; v++) {
        const vf e = vexp(load(lt + v * VL) - mx);
        store(lt + v * VL, e);
        s += e;
    }
    for (int64_t r = 0; r < m; r++) loss[r] = (mx[r] + logf(s[r])) - l[r * rs + y[r] * vs];
    if (!d) return;
    const vf inv = splat(1.0f) / (s * splat((float)B));
    for (int64_t v = 0; v < V; v++)
        if (whole) store(d + v * vs, load(lt + v * VL) * inv);
        else for (int64_t r = 0; r < m; r++) d[r * rs + v * vs] = lt[v * VL + r] * inv[r];
    for (int64_t r = 0; r < m; r++) d[r * rs + y[r] * vs] -= 1.0f / (float)B;
}

/* Forward pass; returns the batch's mean cross-entropy and leaves dlog = d loss / d logits. */
static float forward(const Net *n, Work *w, const int64_t *X, const int64_t *Y) {
    const int64_t V = n->V, E = n->E, T = n->T, Hp = w->Hp, B = n->B, F = T * E;
    PROF_START();
    group_tokens(n, w, X);
    if (n->direct)  /* x = C[X].view(B, T*E), for the direct connections only */
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                memcpy(w->x + b * F + t * E, n->param[P_C] + X[b * T + t] * E, sizeof(float) * E);
    PROF(PH_TOKENS);
    first_layer(n, w);  /* rows[t]: hpre is summed from them in the next phase */
    PROF(PH_FIRST_FWD);
    if (n->batchnorm) batchnorm_tanh(n, w);
    else
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Hp; j += VL) {
                vf x;
                hpre_cols(1, n, w, b, j, &x);
                store(w->h + b * Hp + j, vtanh(x));
            }
    PROF(PH_BN_TANH);

    /* logits held transposed, (V, B) = b2 + W2^T @ h^T: softmax then loads VL rows at once */
    for (int64_t v = 0; v < V; v++)
        for (int64_t b = 0; b < B; b++) w->logits[v * B + b] = n->param[P_B2][v];
    gemm_nt(V, Hp, B, n->param[P_W2], w->h, w->logits, 1);
    if (n->direct) matmul_acc(B, F, V, w->x, n->param[P_D], w->logits, 1);
    PROF(PH_OUT_FWD);

    /* dlog = (softmax - onehot) / B */
    double loss = 0.0;
    for (int64_t b = 0; b < B; b += VL) {
        const int64_t nr = B - b < VL ? B - b : VL;  /* rows in this group of lanes */
        float rows[VL];
        softmax_rows(V, nr, B, w->logits + b, 1, B, Y + b, rows, w->dlog + b, w->lt);
        for (int64_t r = 0; r < nr; r++) loss += rows[r];
    }
    PROF(PH_SOFTMAX);
    return (float)(loss / (double)B);
}

/* Gradient of tanh and BatchNorm, G column vectors from column j (as batchnorm_tanh_cols):
 * dhpre = gain/std * (d - sum(d)/B - xhat * sum(d*xhat)/(B-1)), d = dh * (1 - h^2). */
static inline __attribute__((always_inline)) void batchnorm_tanh_grad_cols(
    const int G, const Net *n, Work *w, int64_t j) {
    const int64_t B = n->B, Hp = w->Hp;
    const vf ib = splat(1.0f / (float)B), ibm1 = splat(1.0f / (float)(B - 1)), one = splat(1.0f);
    vf dgain[4], dbias[4], scale[4], mb[4], dg[4];
    for (int g = 0; g < G; g++) dgain[g] = dbias[g] = splat(0.0f);
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const int64_t k = b * Hp + j + g * VL;
            const vf h = load(w->h + k);
            const vf d = load(w->dh + k) * (one - h * h);
            store(w->dh + k, d);
            dgain[g] += d * load(w->xhat + k);
            dbias[g] += d;
        }
    for (int g = 0; g < G; g++) {
        const int64_t k = j + g * VL;
        store(w->grad[P_GAIN] + k, dgain[g]);
        store(w->grad[P_BIAS] + k, dbias[g]);
        scale[g] = load(n->param[P_GAIN] + k) * load(w->inv + k);
        mb[g] = dbias[g] * ib, dg[g] = dgain[g] * ibm1;
    }
    for (int64_t b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const int64_t k = b * Hp + j + g * VL;
            const vf d = load(w->dh + k) - mb[g] - load(w->xhat + k) * dg[g];
            store(w->dh + k, d * scale[g]);
        }
}

static void batchnorm_tanh_grad(const Net *n, Work *w) {
    int64_t j = 0;
    for (; j + 4 * VL <= w->Hp; j += 4 * VL) batchnorm_tanh_grad_cols(4, n, w, j);
    for (; j < w->Hp; j += VL) batchnorm_tanh_grad_cols(1, n, w, j);
}

static void backward(const Net *n, Work *w, const int64_t *X) {
    const int64_t V = n->V, E = n->E, T = n->T, Hp = w->Hp, B = n->B, F = T * E;
    float **g = w->grad;
    /* dlog is held as (V, B), as the logits */
    gemm(B, V, Hp, w->dlog, 1, B, n->param[P_W2], w->dh, 0);  /* (B, Hp) = dlog @ W2^T */
    if (w->fused)  /* dW2^T (V, Hp) = dlog^T @ h, applied at once */
        gemm_sgd(V, B, Hp, w->dlog, B, 1, w->h, n->param[P_W2], w->step, w->wd);
    else
        gemm(V, B, Hp, w->dlog, B, 1, w->h, g[P_W2], 0);
    for (int64_t v = 0; v < V; v++) {  /* db2: a row of dlog (V, B) summed in vectors */
        const float *d = w->dlog + v * B;
        int64_t b = 0;
        vf s = splat(0.0f);
        for (; b + VL <= B; b += VL) s += load(d + b);
        float sum = hsum(s);
        for (; b < B; b++) sum += d[b];
        g[P_B2][v] = sum;
    }
    PROF(PH_OUT_BWD);

    if (n->batchnorm) {
        batchnorm_tanh_grad(n, w);
    } else {
        const vf one = splat(1.0f);
        memset(g[P_B1], 0, sizeof(float) * Hp);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < Hp; j += VL) {
                const vf h = load(w->h + b * Hp + j);
                const vf d = load(w->dh + b * Hp + j) * (one - h * h);
                store(w->dh + b * Hp + j, d);
                store(g[P_B1] + j, load(g[P_B1] + j) + d);
            }
    }
    PROF(PH_BN_BWD);

    memset(g[P_C], 0, sizeof(float) * V * E);
    first_layer_grad(n, w);
    PROF(PH_FIRST_BWD);
    if (n->direct) {  /* dD = x^T @ dlog; dC gets the scatter of dlog @ D^T */
        matmul_tn(B, F, V, w->x, w->dlog, g[P_D]);
        matmul_nt_plain(B, F, V, w->dlog, n->param[P_D], w->dx);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                float *dc = g[P_C] + X[b * T + t] * E;
                const float *dx = w->dx + b * F + t * E;
                for (int64_t e = 0; e < E; e++) dc[e] += dx[e];
            }
    }
    PROF(PH_EMB_GRAD);
}

static void running_stats(const Net *n, const Work *w) {
    const float m = (float)n->bn_momentum, keep = (float)(1.0 - n->bn_momentum);
    for (int64_t j = 0; j < w->Hp; j++) {
        n->rmean[j] = n->rmean[j] * keep + m * w->mean[j];
        n->rstd[j] = n->rstd[j] * keep + m * w->std[j];
    }
}

/* torch.optim.SGD: g += wd*p; buf = g (first step) or momentum*buf + g; p -= lr*buf */
static void sgd(Net *n, Work *w, double lr) {
    const float mom = (float)n->momentum, neg_lr = (float)-lr;
    for (int i = 0; i < NP; i++) {
        float *restrict p = n->param[i], *restrict g = w->grad[i], *restrict buf = n->state1[i];
        if (!p || (w->fused && (i == P_W1 || i == P_W2))) continue;  /* done in backward */
        const int64_t size = w->size[i];
        const float wd = DECAYED[i] ? (float)n->weight_decay : 0.0f;
        if (mom == 0.0f) {  /* one pass: decay and step together */
            if (wd != 0.0f) for (int64_t k = 0; k < size; k++) p[k] += neg_lr * (g[k] + wd * p[k]);
            else for (int64_t k = 0; k < size; k++) p[k] += neg_lr * g[k];
        } else if (n->opt_steps == 0) {
            for (int64_t k = 0; k < size; k++) {
                buf[k] = g[k] + wd * p[k];
                p[k] += neg_lr * buf[k];
            }
        } else {
            for (int64_t k = 0; k < size; k++) {
                buf[k] = mom * buf[k] + (g[k] + wd * p[k]);
                p[k] += neg_lr * buf[k];
            }
        }
    }
}

/* torch.optim.AdamW (single-tensor path) */
static void adamw(Net *n, Work *w, double lr) {
    const int64_t t = n->opt_steps + 1;
    const double bc1 = 1.0 - pow(n->beta1, (double)t), bc2_sqrt = sqrt(1.0 - pow(n->beta2, (double)t));
    const float w1 = (float)(1.0 - n->beta1), b2 = (float)n->beta2, w2 = (float)(1.0 - n->beta2);
    const float neg_step = (float)(-lr / bc1), bc2s = (float)bc2_sqrt, eps = (float)n->eps;
    for (int i = 0; i < NP; i++) {
        float *restrict p = n->param[i], *restrict g = w->grad[i];
        float *restrict m = n->state1[i], *restrict v = n->state2[i];
        if (!p) continue;
        const int64_t size = w->size[i];
        const float decay = DECAYED[i] ? (float)(1.0 - lr * n->weight_decay) : 1.0f;
        for (int64_t k = 0; k < size; k++) {
            p[k] *= decay;
            m[k] += w1 * (g[k] - m[k]);
            v[k] = v[k] * b2 + w2 * g[k] * g[k];
            p[k] += neg_step * (m[k] / (sqrtf(v[k]) / bc2s + eps));
        }
    }
}

/* ---- a run's padded copies ---- */

/* out (cols, ldo) = in (rows, cols)^T, out's pad columns zero */
static void transpose_in(int64_t rows, int64_t cols, int64_t ldo, const float *restrict in,
                         float *restrict out) {
    memset(out, 0, sizeof(float) * cols * ldo);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[c * ldo + r] = in[r * cols + c];
}

static void transpose_out(int64_t rows, int64_t cols, int64_t ldi, const float *restrict in,
                          float *restrict out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[r * cols + c] = in[c * ldi + r];
}

/* rows of H floats copied into rows of Hp (pad zero), and back */
static void pad_in(int64_t rows, int64_t H, int64_t Hp, const float *in, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        memcpy(out + r * Hp, in + r * H, sizeof(float) * H);
        memset(out + r * Hp + H, 0, sizeof(float) * (Hp - H));
    }
}

static void pad_out(int64_t rows, int64_t H, int64_t Hp, const float *in, float *out) {
    for (int64_t r = 0; r < rows; r++) memcpy(out + r * H, in + r * Hp, sizeof(float) * H);
}

static float *carve(float **cursor, int64_t count) {
    float *p = *cursor;
    *cursor += (count + 15) & ~(int64_t)15;  /* keep every buffer 64-byte aligned */
    return p;
}

/* A run's view of the model: `m` a copy of *n whose H-long rows (and W2, transposed to
 * (V, Hp)) point into padded buffers carved from *cur, filled from n's tensors. */
static void padded_view(const Net *n, Net *m, int64_t Hp, float **cur, int with_state) {
    const int64_t H = n->H, V = n->V;
    *m = *n;
    for (int i = 0; i < NP; i++) {
        float **slots[3] = {&m->param[i], &m->state1[i], &m->state2[i]};
        for (int k = 0; k < (with_state ? 3 : 1); k++) {
            const float *src = *slots[k];
            if (!src) continue;
            if (i == P_W2) {
                *slots[k] = carve(cur, V * Hp);
                transpose_in(H, V, Hp, src, *slots[k]);
            } else if (H_LAST[i]) {
                const int64_t rows = i == P_W1 ? n->T * n->E : 1;
                *slots[k] = carve(cur, rows * Hp);
                pad_in(rows, H, Hp, src, *slots[k]);
            }
        }
    }
    if (n->rmean) {
        m->rmean = carve(cur, Hp);
        m->rstd = carve(cur, Hp);
        pad_in(1, H, Hp, n->rmean, m->rmean);
        pad_in(1, H, Hp, n->rstd, m->rstd);
    }
}

static void padded_back(const Net *m, Net *n, int64_t Hp) {
    const int64_t H = n->H, V = n->V;
    for (int i = 0; i < NP; i++) {
        float *from[3] = {m->param[i], m->state1[i], m->state2[i]};
        float *to[3] = {n->param[i], n->state1[i], n->state2[i]};
        for (int k = 0; k < 3; k++) {
            if (!to[k] || from[k] == to[k]) continue;
            if (i == P_W2) transpose_out(H, V, Hp, from[k], to[k]);
            else pad_out(i == P_W1 ? n->T * n->E : 1, H, Hp, from[k], to[k]);
        }
    }
    if (n->rmean) {
        pad_out(1, H, Hp, m->rmean, n->rmean);
        pad_out(1, H, Hp, m->rstd, n->rstd);
    }
}

/* Floats the padded parameters, optimizer state and running statistics take. */
static int64_t padded_size(const Net *n, int64_t Hp) {
    const int64_t rows[NP] = {0, n->T * n->E, 1, n->V, 0, 0, 1, 1};
    int64_t total = 2 * (Hp + 16);
    for (int i = 0; i < NP; i++) total += 3 * (rows[i] * Hp + 16);
    return total;
}

/* Train `steps` steps on the examples Xall (N, T) contexts, Yall (N,) targets: step s's
 * batch is rows ix[s*B .. s*B+B-1] (gathered here, so Python hands over indices only), its
 * learning rate lr[s]; writes losses (steps,). Returns 0, or -1 when the workspace cannot
 * be allocated. */
int charmlp_run(Net *n, int64_t steps, const int64_t *Xall, const int64_t *Yall,
                const int64_t *ix, const double *lr, float *losses) {
    const int64_t V = n->V, E = n->E, T = n->T, H = n->H, B = n->B, F = T * E;
    const int64_t Hp = round_up(H);
    Work w;
    w.Hp = Hp;
    const int64_t sizes[NP] = {V * E, F * Hp, Hp, Hp * V, V, F * V, Hp, Hp};
    const int64_t umax = V < B ? V : B;
    int64_t total = padded_size(n, Hp);
    const int64_t counts[] = {B * F, B * Hp, B * Hp, B * V, B * V, B * Hp, B * F,
                              Hp, Hp, Hp, Hp, T * umax * E, T * umax * Hp, umax * E, V * VL};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) total += counts[i] + 16;
    for (int i = 0; i < NP; i++) total += sizes[i] + 16;
    float *block = aligned_alloc(64, sizeof(float) * ((total + 15) & ~(int64_t)15));
    if (!block) return -1;
    float *cur = block;
    w.x = carve(&cur, B * F); w.hpre = carve(&cur, B * Hp); w.xhat = w.hpre;  /* normalised in place */
    w.h = carve(&cur, B * Hp); w.logits = carve(&cur, B * V); w.dlog = carve(&cur, B * V);
    w.dh = carve(&cur, B * Hp); w.dx = carve(&cur, B * F);
    w.mean = carve(&cur, Hp); w.std = carve(&cur, Hp); w.inv = carve(&cur, Hp);
    w.padone = carve(&cur, Hp);
    for (int64_t j = 0; j < Hp; j++) w.padone[j] = j < H ? 0.0f : 1.0f;
    for (int i = 0; i < NP; i++) {
        w.size[i] = sizes[i];
        w.grad[i] = carve(&cur, sizes[i]);
        memset(w.grad[i], 0, sizeof(float) * sizes[i]);
    }
    w.umax = umax;
    w.cu = carve(&cur, T * w.umax * E); w.rows = carve(&cur, T * w.umax * Hp); w.grows = carve(&cur, w.umax * E);
    w.lt = carve(&cur, V * VL);
    int32_t *ints = malloc(sizeof(int32_t) * (T * w.umax + T * B + V) + sizeof(int64_t) * (T + B * T + B));
    if (!ints) { free(block); return -1; }
    w.nuniq = (int64_t *)ints;
    int64_t *Xs = w.nuniq + T, *Ys = Xs + B * T;  /* the step's batch */
    w.uniq = (int32_t *)(Ys + B); w.slot = w.uniq + T * w.umax; w.seen = w.slot + T * B;

    Net m;
    padded_view(n, &m, Hp, &cur, 1);
    w.fused = n->opt == 0 && n->momentum == 0.0;
    w.wd = (float)n->weight_decay;
    for (int64_t s = 0; s < steps; s++) {
        for (int64_t b = 0; b < B; b++) {
            const int64_t row = ix[s * B + b];
            memcpy(Xs + b * T, Xall + row * T, sizeof(int64_t) * T);
            Ys[b] = Yall[row];
        }
        w.step = (float)-lr[s];
        losses[s] = forward(&m, &w, Xs, Ys);
        backward(&m, &w, Xs);
        if (m.batchnorm) running_stats(&m, &w);
        if (m.opt == 1) adamw(&m, &w, lr[s]);
        else sgd(&m, &w, lr[s]);
        m.opt_steps++;
        PROF(PH_OPTIM);
    }
    padded_back(&m, n, Hp);
    n->opt_steps = m.opt_steps;
    free(ints);
    free(block);
    return 0;
}

/* The summed cross-entropy of N examples X (N, T), Y (N) in evaluation mode (BatchNorm's
 * running statistics), for full-split evaluations. The first layer is a table lookup:
 * per position t, P_t = C @ W1_t (V, Hp) once, then hpre[b] = sum_t P_t[X[b, t]].
 * Writes the sum to *sum and returns 0, or -1 when the workspace cannot be allocated. */
int charmlp_eval(const Net *n, int64_t N, const int64_t *X, const int64_t *Y, double *sum) {
    const int64_t V = n->V, E = n->E, T = n->T, H = n->H, F = T * E, Hp = round_up(H);
    const int64_t RB = 64;  /* rows per block: its activations stay in L1/L2 */
    int64_t total = padded_size(n, Hp) + T * V * Hp + 3 * Hp + RB * (Hp + 2 * V + F) + V * VL + 112;
    float *block = aligned_alloc(64, sizeof(float) * ((total + 15) & ~(int64_t)15));
    if (!block) return -1;
    float *cur = block;
    Net m;
    padded_view(n, &m, Hp, &cur, 0);
    float *P = carve(&cur, T * V * Hp), *h = carve(&cur, RB * Hp), *logits = carve(&cur, RB * V);
    float *x = carve(&cur, RB * F), *mean = carve(&cur, Hp), *inv = carve(&cur, Hp);
    float *base = carve(&cur, Hp), *lt = carve(&cur, V * VL);
    for (int64_t t = 0; t < T; t++)
        gemm(V, E, Hp, m.param[P_C], E, 1, m.param[P_W1] + t * E * Hp, P + t * V * Hp, 0);
    for (int64_t j = 0; j < Hp; j++) {
        base[j] = m.batchnorm ? 0.0f : m.param[P_B1][j];
        mean[j] = m.batchnorm ? m.rmean[j] : 0.0f;
        inv[j] = m.batchnorm && j < H ? 1.0f / m.rstd[j] : 1.0f;
    }
    double total_loss = 0.0;
    for (int64_t b0 = 0; b0 < N; b0 += RB) {
        const int64_t nb = N - b0 < RB ? N - b0 : RB;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t *xb = X + (b0 + b) * T;
            float *hb = h + b * Hp;
            for (int64_t j = 0; j < Hp; j += VL) {
                vf s = load(base + j);
                for (int64_t t = 0; t < T; t++) s += load(P + (t * V + xb[t]) * Hp + j);
                if (m.batchnorm)
                    s = load(m.param[P_GAIN] + j) * ((s - load(mean + j)) * load(inv + j))
                        + load(m.param[P_BIAS] + j);
                store(hb + j, vtanh(s));
            }
            memcpy(logits + b * V, m.param[P_B2], sizeof(float) * V);
            if (m.direct)
                for (int64_t t = 0; t < T; t++)
                    memcpy(x + b * F + t * E, m.param[P_C] + xb[t] * E, sizeof(float) * E);
        }
        gemm_nt(nb, Hp, V, h, m.param[P_W2], logits, 1);
        if (m.direct) matmul_acc(nb, F, V, x, m.param[P_D], logits, 0);
        for (int64_t b = 0; b < nb; b += VL) {
            const int64_t nr = nb - b < VL ? nb - b : VL;  /* rows in this group of lanes */
            float rows[VL];
            softmax_rows(V, nr, 1, logits + b * V, V, 1, Y + b0 + b, rows, NULL, lt);
            for (int64_t r = 0; r < nr; r++) total_loss += (double)rows[r];
        }
    }
    free(block);
    *sum = total_loss;
    return 0;
}
