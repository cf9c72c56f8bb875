#pragma GCC optimize("fp-contract=fast")  /* FMA in the vector kernels (C11 mode turns it off) */
/* The CharMLP training loop in C (float32, one thread), for charmlp.engines.native.
 *
 * Same maths as charmlp.model.CharMLP + torch.optim (foreach=False): embedding -> Linear ->
 * BatchNorm (batch mean, unbiased std, no eps) or bias -> tanh -> Linear (+ direct x@D),
 * mean cross-entropy; SGD (momentum, weight decay added to the grad) or AdamW (decoupled
 * decay, bias corrections, eps outside the sqrt). Weight decay only on the matrices.
 *
 * Parameters and optimizer state are the caller's tensors (pointers in Net); run() does
 * n whole steps on pre-gathered batches, so Python is touched once per n steps.
 *
 * Where the time goes, and why it is spent that way:
 * - the first layer works on each context position's distinct tokens rather than on every
 *   example (first_layer), which at batch 32 skips more than half of its multiply-adds;
 * - W2 is held transposed for a run, so every product with it runs along H;
 * - matmuls are register-tiled kernels in GCC/Clang vector extensions (i-k-j order for
 *   x @ W and the weight gradients, row dot products for dy @ W^T), and tanh/exp are inline
 *   vector polynomials, so the hot loops run 8 lanes wide with no -ffast-math.
 * The float sums therefore run in another order than torch's; losses agree with the
 * reference loop to about 1e-6 over 200k steps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { P_C, P_W1, P_B1, P_W2, P_B2, P_D, P_GAIN, P_BIAS, NP };
static const int DECAYED[NP] = {1, 1, 0, 1, 0, 1, 0, 0}; /* 2-D parameters */

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

typedef struct {
    float *x, *hpre, *xhat, *h, *logits, *dlog, *dh, *dx;   /* activations and their grads */
    float *mean, *std;  /* batch statistics */
    float *scale, *mb, *dg;
    float *w2t[3];  /* W2^T (V, H) and its optimizer state, which stand in for W2 during a run */
    float *grad[NP];
    int64_t size[NP];
    /* The first layer by distinct token: per position t, the batch's distinct tokens
     * uniq[t] (first-seen order), each example's index into them slot[t], their count nuniq[t];
     * cu[t] = C[uniq[t]] rows; rows/grows hold one position's (count, H) / (count, E) rows. */
    int32_t *uniq, *slot, *seen;
    int64_t *nuniq;
    float *cu, *rows, *grows;
    int64_t umax;  /* min(V, B): the most distinct tokens a position can have */
} Work;

typedef float v8 __attribute__((vector_size(32)));    /* GCC/Clang vector extensions: */
typedef int32_t i8v __attribute__((vector_size(32)));  /* one AVX register each */

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 splat(float x) { return (v8){x, x, x, x, x, x, x, x}; }
static inline v8 blend(i8v mask, v8 a, v8 b) { return (v8)((mask & (i8v)a) | (~mask & (i8v)b)); }

/* exp(x), 8 lanes, for x in [-87, 88] (clamped): Cody-Waite reduction by round(x/ln2) (the
 * 1.5*2^23 trick rounds and leaves n in the low mantissa bits) and a degree-6 polynomial,
 * about 1 ulp. libm's expf/tanhf are calls per element and were half the step time. */
static inline v8 vexp(v8 x) {
    const float magic = 12582912.0f;  /* 1.5 * 2^23 */
    x = blend(x < splat(-87.0f), splat(-87.0f), x);
    x = blend(x > splat(88.0f), splat(88.0f), x);
    v8 t = x * splat(1.44269504f) + splat(magic);
    v8 n = t - splat(magic);
    v8 r = x - n * splat(0.693145752f);  /* ln2 split in hi + lo so r is exact */
    r = r - n * splat(1.42860677e-06f);
    v8 p = splat(1.0f / 720.0f);
    p = p * r + splat(1.0f / 120.0f);
    p = p * r + splat(1.0f / 24.0f);
    p = p * r + splat(1.0f / 6.0f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    i8v ni = (i8v)t - (i8v)splat(magic);
    return p * (v8)((ni + 127) << 23);
}

/* tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)), or its odd Taylor series near 0 where that
 * form cancels. Absolute error ~1e-7, as tanhf's. */
static inline v8 vtanh(v8 x) {
    const i8v signbit = (i8v)splat(-0.0f);
    v8 a = (v8)((i8v)x & ~signbit);
    a = blend(a > splat(9.0f), splat(9.0f), a);  /* tanh(9) == 1 in float */
    v8 big = splat(1.0f) - splat(2.0f) / (vexp(a + a) + splat(1.0f));
    v8 a2 = a * a;
    v8 small = a * (splat(1.0f) + a2 * (splat(-1.0f / 3.0f) + a2 * (splat(2.0f / 15.0f)
               + a2 * (splat(-17.0f / 315.0f) + a2 * splat(62.0f / 2835.0f)))));
    v8 t = blend(a < splat(0.125f), small, big);
    return (v8)((i8v)t | ((i8v)x & signbit));
}

/* f over n floats, 8 at a time; the tail goes through a zero-padded vector. */
#define VMAP(f, n, in, out)                                                    \
    do {                                                                       \
        int64_t i_ = 0;                                                        \
        for (; i_ + 8 <= (n); i_ += 8) store8((out) + i_, f(load8((in) + i_))); \
        if (i_ < (n)) {                                                        \
            float buf_[8] = {0};                                               \
            memcpy(buf_, (in) + i_, sizeof(float) * ((n) - i_));               \
            store8(buf_, f(load8(buf_)));                                      \
            memcpy((out) + i_, buf_, sizeof(float) * ((n) - i_));              \
        }                                                                      \
    } while (0)

/* out[j] += a * v[j]: the one inner loop of every matmul here. */
static inline void axpy(int64_t n, float a, const float *restrict v, float *restrict out) {
    for (int64_t j = 0; j < n; j++) out[j] += a * v[j];
}

/* C (M, N) (+)= A (M, K) @ Bm (K, N); A's element (i, k) is A[i*sai + k*sak], so A^T is
 * the same call with the strides swapped (no transposed copy). Bm and C are row-major.
 * acc=0 overwrites C instead of adding to it (no memset first). Register tiles of R rows x
 * W columns (R*W/8 accumulators, 12 in the main 6x16 tile, so both FMA units stay busy
 * through FMA latency): each loaded row chunk of Bm serves R rows of A, and C is read and
 * written once per tile instead of once per k. The last chunk of a row that does not fill
 * 8 lanes (nv < 8) is loaded whole from Bm's next row, or from a zero-padded copy on Bm's
 * last row, and only its nv valid lanes are stored. */
static inline __attribute__((always_inline)) void gemm_tile(
    const int R, const int W, int nv, int64_t i, int64_t j, int64_t K, int64_t N,
    const float *restrict A, int64_t sai, int64_t sak, const float *restrict Bm,
    float *restrict C, int acc) {
    v8 s[6][4];
    const int Q = W / 8;
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) {
            float buf[8] = {0};
            if (acc) memcpy(buf, C + (i + r) * N + j + 8 * q, sizeof(float) * (q < Q - 1 ? 8 : nv));
            s[r][q] = load8(buf);
        }
    const float *a = A + i * sai;
    const float *b = Bm + j;
    for (int64_t k = 0; k < K; k++) {
        const float *row = b + k * N;
        v8 bv[4];
        for (int q = 0; q < Q - 1; q++) bv[q] = load8(row + 8 * q);
        if (nv == 8 || k < K - 1) {
            bv[Q - 1] = load8(row + 8 * (Q - 1));
        } else {  /* a short chunk on Bm's last row: whole 8 lanes would read past its end */
            float buf[8] = {0};
            memcpy(buf, row + 8 * (Q - 1), sizeof(float) * nv);
            bv[Q - 1] = load8(buf);
        }
        for (int r = 0; r < R; r++) {
            const v8 x = splat(a[r * sai + k * sak]);
            for (int q = 0; q < Q; q++) s[r][q] += x * bv[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) {
            float buf[8];
            store8(buf, s[r][q]);
            memcpy(C + (i + r) * N + j + 8 * q, buf, sizeof(float) * (q < Q - 1 ? 8 : nv));
        }
}

/* Rows i..i+R of C: 16-column tiles (32 for one or two rows, which have fewer
 * accumulators), then the rest of the row in one tile. */
static inline __attribute__((always_inline)) void gemm_rows(
    const int R, int64_t i, int64_t K, int64_t N, const float *restrict A, int64_t sai,
    int64_t sak, const float *restrict Bm, float *restrict C, int acc) {
    const int W = R <= 2 ? 32 : 16;
    int64_t j = 0;
    for (; j + W <= N; j += W) gemm_tile(R, W, 8, i, j, K, N, A, sai, sak, Bm, C, acc);
    const int64_t left = N - j;
    if (left > 24) gemm_tile(R, 32, (int)(left - 24), i, j, K, N, A, sai, sak, Bm, C, acc);
    else if (left > 16) gemm_tile(R, 24, (int)(left - 16), i, j, K, N, A, sai, sak, Bm, C, acc);
    else if (left > 8) gemm_tile(R, 16, (int)(left - 8), i, j, K, N, A, sai, sak, Bm, C, acc);
    else if (left > 0) gemm_tile(R, 8, (int)left, i, j, K, N, A, sai, sak, Bm, C, acc);
}

static void gemm(int64_t M, int64_t K, int64_t N, const float *restrict A, int64_t sai,
                 int64_t sak, const float *restrict Bm, float *restrict C, int acc) {
    int64_t i = 0;
    for (; i + 6 <= M; i += 6) gemm_rows(6, i, K, N, A, sai, sak, Bm, C, acc);
    switch (M - i) {  /* leftover rows in one tile, not one row at a time */
    case 5: gemm_rows(5, i, K, N, A, sai, sak, Bm, C, acc); break;
    case 4: gemm_rows(4, i, K, N, A, sai, sak, Bm, C, acc); break;
    case 3: gemm_rows(3, i, K, N, A, sai, sak, Bm, C, acc); break;
    case 2: gemm_rows(2, i, K, N, A, sai, sak, Bm, C, acc); break;
    case 1: gemm_rows(1, i, K, N, A, sai, sak, Bm, C, acc); break;
    }
}

static inline float hsum(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* C (M, N) += A (M, K) @ Bt (N, K)^T for rows i..i+R, columns j..j+Q: dot products of
 * contiguous rows, R*Q accumulators, so a weight used as W^T needs no transposed copy. */
static inline __attribute__((always_inline)) void nt_tile(
    const int R, const int Q, int64_t i, int64_t j, int64_t K, int64_t N,
    const float *restrict A, const float *restrict Bt, float *restrict C) {
    v8 s[4][3];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) s[r][q] = splat(0.0f);
    const int64_t K8 = K - K % 8;
    for (int64_t k = 0; k < K8; k += 8) {
        v8 b[3];
        for (int q = 0; q < Q; q++) b[q] = load8(Bt + (j + q) * K + k);
        for (int r = 0; r < R; r++) {
            const v8 a = load8(A + (i + r) * K + k);
            for (int q = 0; q < Q; q++) s[r][q] += a * b[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) {
            float t = hsum(s[r][q]);
            for (int64_t k = K8; k < K; k++) t += A[(i + r) * K + k] * Bt[(j + q) * K + k];
            C[(i + r) * N + j + q] += t;
        }
}

static inline __attribute__((always_inline)) void nt_rows(
    const int R, int64_t i, int64_t K, int64_t N, const float *restrict A,
    const float *restrict Bt, float *restrict C) {
    int64_t j = 0;
    for (; j + 3 <= N; j += 3) nt_tile(R, 3, i, j, K, N, A, Bt, C);
    if (N - j == 2) nt_tile(R, 2, i, j, K, N, A, Bt, C);
    else if (N - j == 1) nt_tile(R, 1, i, j, K, N, A, Bt, C);
}

/* C (M, N) += A (M, K) @ Bt (N, K)^T in tiles of 4 rows x 3 columns (12 accumulators). */
static void gemm_nt(int64_t M, int64_t K, int64_t N, const float *restrict A,
                    const float *restrict Bt, float *restrict C) {
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) nt_rows(4, i, K, N, A, Bt, C);
    switch (M - i) {
    case 3: nt_rows(3, i, K, N, A, Bt, C); break;
    case 2: nt_rows(2, i, K, N, A, Bt, C); break;
    case 1: nt_rows(1, i, K, N, A, Bt, C); break;
    }
}

/* out (B, N) += in (B, K) @ W (K, N) */
static void matmul_acc(int64_t B, int64_t K, int64_t N, const float *restrict in,
                       const float *restrict W, float *restrict out) {
    gemm(B, K, N, in, K, 1, W, out, 1);
}

/* G (K, N) = A^T (K, B) @ Dy (B, N): weight gradient, overwriting G. */
static void matmul_tn(int64_t B, int64_t K, int64_t N, const float *restrict A,
                      const float *restrict Dy, float *restrict G) {
    gemm(K, B, N, A, 1, K, Dy, G, 0);
}

/* colsum (N) = sum over the B rows of A (B, N) */
static void colsum(int64_t B, int64_t N, const float *restrict A, float *restrict out) {
    memset(out, 0, sizeof(float) * N);
    for (int64_t b = 0; b < B; b++) axpy(N, 1.0f, A + b * N, out);
}

static void broadcast_rows(int64_t B, int64_t N, const float *row, float *out) {
    for (int64_t b = 0; b < B; b++) memcpy(out + b * N, row, sizeof(float) * N);
}

/* The first layer works per context position t on the batch's distinct tokens there (about
 * 13 of 32 examples' worth at batch 32, at most V), because x @ W1 is a sum over t of
 * C[X[:, t]] @ W1_t, where W1_t is W1's rows t*E..(t+1)*E. So
 *   forward  hpre[b] += (C[u] @ W1_t)[slot[b]]            (u: the distinct tokens)
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

/* hpre (B, H) += x @ W1, by distinct token */
static void first_layer(const Net *n, Work *w) {
    const int64_t E = n->E, H = n->H, B = n->B;
    for (int64_t t = 0; t < n->T; t++) {
        const int32_t *slot = w->slot + t * B;
        gemm(w->nuniq[t], E, H, w->cu + t * w->umax * E, E, 1, n->param[P_W1] + t * E * H,
             w->rows, 0);
        for (int64_t b = 0; b < B; b++) axpy(H, 1.0f, w->rows + slot[b] * H, w->hpre + b * H);
    }
}

/* dW1 = x^T @ dh and dC += the scatter of dh @ W1^T, by distinct token (dC zeroed first) */
static void first_layer_grad(const Net *n, Work *w) {
    const int64_t E = n->E, H = n->H, B = n->B;
    for (int64_t t = 0; t < n->T; t++) {
        const int64_t count = w->nuniq[t];
        const int32_t *slot = w->slot + t * B, *uniq = w->uniq + t * w->umax;
        const float *W1t = n->param[P_W1] + t * E * H;
        memset(w->rows, 0, sizeof(float) * count * H);
        for (int64_t b = 0; b < B; b++) axpy(H, 1.0f, w->dh + b * H, w->rows + slot[b] * H);
        gemm(E, count, H, w->cu + t * w->umax * E, 1, E, w->rows, w->grad[P_W1] + t * E * H, 0);
        memset(w->grows, 0, sizeof(float) * count * E);
        gemm_nt(count, H, E, w->rows, W1t, w->grows);
        for (int64_t i = 0; i < count; i++) axpy(E, 1.0f, w->grows + i * E, w->grad[P_C] + uniq[i] * E);
    }
}

/* Forward pass; returns the batch's mean cross-entropy and leaves dlog = d loss / d logits. */
static float forward(const Net *n, Work *w, const int64_t *X, const int64_t *Y) {
    const int64_t V = n->V, E = n->E, T = n->T, H = n->H, B = n->B, F = T * E;
    group_tokens(n, w, X);
    if (n->direct)  /* x = C[X].view(B, T*E), for the direct connections only */
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                memcpy(w->x + b * F + t * E, n->param[P_C] + X[b * T + t] * E, sizeof(float) * E);

    if (n->batchnorm) memset(w->hpre, 0, sizeof(float) * B * H);
    else broadcast_rows(B, H, n->param[P_B1], w->hpre);
    first_layer(n, w);  /* (B, H) */

    if (n->batchnorm) {
        const float *gain = n->param[P_GAIN], *bias = n->param[P_BIAS];
        colsum(B, H, w->hpre, w->mean);
        for (int64_t j = 0; j < H; j++) w->mean[j] /= (float)B;
        memset(w->std, 0, sizeof(float) * H);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                float c = w->hpre[b * H + j] - w->mean[j];
                w->xhat[b * H + j] = c;
                w->std[j] += c * c;
            }
        for (int64_t j = 0; j < H; j++) w->std[j] = sqrtf(w->std[j] / (float)(B - 1));
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                float xh = w->xhat[b * H + j] / w->std[j];
                w->xhat[b * H + j] = xh;
                w->h[b * H + j] = gain[j] * xh + bias[j];
            }
        VMAP(vtanh, B * H, w->h, w->h);
    } else {
        VMAP(vtanh, B * H, w->hpre, w->h);
    }

    broadcast_rows(B, V, n->param[P_B2], w->logits);
    gemm_nt(B, H, V, w->h, n->param[P_W2], w->logits);  /* (B, V) = h @ W2 (held as W2^T) */
    if (n->direct) matmul_acc(B, F, V, w->x, n->param[P_D], w->logits);

    /* stable log-sum-exp; dlog = (softmax - onehot) / B */
    double loss = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const float *l = w->logits + b * V;
        float *d = w->dlog + b * V;
        float mx = l[0];
        for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        float s = 0.0f;
        for (int64_t v = 0; v < V; v++) d[v] = l[v] - mx;
        VMAP(vexp, V, d, d);
        for (int64_t v = 0; v < V; v++) s += d[v];
        float lse = mx + logf(s), inv = 1.0f / (s * (float)B);
        loss += lse - l[Y[b]];
        for (int64_t v = 0; v < V; v++) d[v] *= inv;
        d[Y[b]] -= 1.0f / (float)B;
    }
    return (float)(loss / (double)B);
}

static void backward(const Net *n, Work *w, const int64_t *X) {
    const int64_t V = n->V, E = n->E, T = n->T, H = n->H, B = n->B, F = T * E;
    float **g = w->grad;
    gemm(V, B, H, w->dlog, 1, V, w->h, g[P_W2], 0);  /* dW2^T (V, H) = dlog^T @ h */
    colsum(B, V, w->dlog, g[P_B2]);
    gemm(B, V, H, w->dlog, V, 1, n->param[P_W2], w->dh, 0);  /* (B, H) = dlog @ W2^T */

    if (n->batchnorm) {
        /* dhpre = gain/std * (dh - sum(dh)/B - xhat * sum(dh*xhat)/(B-1)) (unbiased std) */
        float *dgain = g[P_GAIN], *dbias = g[P_BIAS];
        memset(dgain, 0, sizeof(float) * H);
        memset(dbias, 0, sizeof(float) * H);
        float *restrict dh = w->dh;
        const float *restrict h = w->h, *restrict xhat = w->xhat;
        for (int64_t b = 0; b < B; b++)  /* tanh' fused with the gain/bias sums */
            for (int64_t j = 0; j < H; j++) {
                const float hv = h[b * H + j];
                const float d = dh[b * H + j] * (1.0f - hv * hv);
                dh[b * H + j] = d;
                dgain[j] += d * xhat[b * H + j];
                dbias[j] += d;
            }
        const float *gain = n->param[P_GAIN];
        float *restrict scale = w->scale, *restrict mb = w->mb, *restrict dg = w->dg;
        const float ib = 1.0f / (float)B, ibm1 = 1.0f / (float)(B - 1);
        for (int64_t j = 0; j < H; j++) {
            scale[j] = gain[j] / w->std[j];
            mb[j] = dbias[j] * ib;
            dg[j] = dgain[j] * ibm1;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                float d = dh[b * H + j] - mb[j] - xhat[b * H + j] * dg[j];
                dh[b * H + j] = d * scale[j];
            }
    } else {
        for (int64_t i = 0; i < B * H; i++) w->dh[i] *= 1.0f - w->h[i] * w->h[i];  /* tanh' */
        colsum(B, H, w->dh, g[P_B1]);
    }

    memset(g[P_C], 0, sizeof(float) * V * E);
    first_layer_grad(n, w);
    if (n->direct) {  /* dD = x^T @ dlog; dC gets the scatter of dlog @ D^T */
        matmul_tn(B, F, V, w->x, w->dlog, g[P_D]);
        memset(w->dx, 0, sizeof(float) * B * F);
        gemm_nt(B, V, F, w->dlog, n->param[P_D], w->dx);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                axpy(E, 1.0f, w->dx + b * F + t * E, g[P_C] + X[b * T + t] * E);
    }
}

static void running_stats(const Net *n, const Work *w) {
    const float m = (float)n->bn_momentum, keep = (float)(1.0 - n->bn_momentum);
    for (int64_t j = 0; j < n->H; j++) {
        n->rmean[j] = n->rmean[j] * keep + m * w->mean[j];
        n->rstd[j] = n->rstd[j] * keep + m * w->std[j];
    }
}

/* torch.optim.SGD: g += wd*p; buf = g (first step) or momentum*buf + g; p -= lr*buf */
static void sgd(Net *n, Work *w, double lr) {
    const float mom = (float)n->momentum, neg_lr = (float)-lr;
    for (int i = 0; i < NP; i++) {
        float *p = n->param[i], *g = w->grad[i], *buf = n->state1[i];
        if (!p) continue;
        const int64_t size = w->size[i];
        const float wd = DECAYED[i] ? (float)n->weight_decay : 0.0f;
        if (wd != 0.0f) for (int64_t k = 0; k < size; k++) g[k] += wd * p[k];
        if (mom != 0.0f) {
            if (n->opt_steps == 0) memcpy(buf, g, sizeof(float) * size);
            else for (int64_t k = 0; k < size; k++) buf[k] = mom * buf[k] + g[k];
            g = buf;
        }
        for (int64_t k = 0; k < size; k++) p[k] += neg_lr * g[k];
    }
}

/* torch.optim.AdamW (single-tensor path) */
static void adamw(Net *n, Work *w, double lr) {
    const int64_t t = n->opt_steps + 1;
    const double bc1 = 1.0 - pow(n->beta1, (double)t), bc2_sqrt = sqrt(1.0 - pow(n->beta2, (double)t));
    const float w1 = (float)(1.0 - n->beta1), b2 = (float)n->beta2, w2 = (float)(1.0 - n->beta2);
    const float neg_step = (float)(-lr / bc1), bc2s = (float)bc2_sqrt, eps = (float)n->eps;
    for (int i = 0; i < NP; i++) {
        float *p = n->param[i], *g = w->grad[i], *m = n->state1[i], *v = n->state2[i];
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

/* out (cols, rows) = in (rows, cols)^T */
static void transpose(int64_t rows, int64_t cols, const float *restrict in, float *restrict out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[c * rows + r] = in[r * cols + c];
}

static float *carve(float **cursor, int64_t count) {
    float *p = *cursor;
    *cursor += (count + 15) & ~(int64_t)15;  /* keep every buffer 64-byte aligned */
    return p;
}

/* Train `steps` steps: X (steps, B, T) contexts, Y (steps, B) targets, lr (steps,);
 * writes losses (steps,). Returns 0, or -1 when the workspace cannot be allocated. */
int charmlp_run(Net *n, int64_t steps, const int64_t *X, const int64_t *Y, const double *lr,
                float *losses) {
    const int64_t V = n->V, E = n->E, T = n->T, H = n->H, B = n->B, F = T * E;
    Work w;
    const int64_t sizes[NP] = {V * E, F * H, H, H * V, V, F * V, H, H};
    const int64_t umax = V < B ? V : B;
    int64_t total = 0;
    const int64_t counts[] = {B * F, B * H, B * H, B * H, B * V, B * V, B * H, B * F,
                              H, H, V * H, V * H, V * H, H, H, H,
                              T * umax * E, umax * H, umax * E};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) total += counts[i] + 16;
    for (int i = 0; i < NP; i++) total += sizes[i] + 16;
    float *block = aligned_alloc(64, sizeof(float) * ((total + 15) & ~(int64_t)15));
    if (!block) return -1;
    float *cur = block;
    w.x = carve(&cur, B * F); w.hpre = carve(&cur, B * H); w.xhat = carve(&cur, B * H);
    w.h = carve(&cur, B * H); w.logits = carve(&cur, B * V); w.dlog = carve(&cur, B * V);
    w.dh = carve(&cur, B * H); w.dx = carve(&cur, B * F);
    w.mean = carve(&cur, H); w.std = carve(&cur, H);
    for (int k = 0; k < 3; k++) w.w2t[k] = carve(&cur, V * H);
    w.scale = carve(&cur, H); w.mb = carve(&cur, H); w.dg = carve(&cur, H);
    for (int i = 0; i < NP; i++) { w.size[i] = sizes[i]; w.grad[i] = carve(&cur, sizes[i]); }
    w.umax = umax;
    w.cu = carve(&cur, T * w.umax * E); w.rows = carve(&cur, w.umax * H); w.grows = carve(&cur, w.umax * E);
    int32_t *ints = malloc(sizeof(int32_t) * (T * w.umax + T * B + V) + sizeof(int64_t) * T);
    if (!ints) { free(block); return -1; }
    w.nuniq = (int64_t *)ints;
    w.uniq = (int32_t *)(w.nuniq + T); w.slot = w.uniq + T * w.umax; w.seen = w.slot + T * B;

    /* The run works on W2^T (V, H) so that every product with W2 runs along H; W2 and its
     * optimizer state are transposed in once and back once (the updates are elementwise). */
    Net m = *n;
    float **w2[3] = {&m.param[P_W2], &m.state1[P_W2], &m.state2[P_W2]};
    for (int k = 0; k < 3; k++)
        if (*w2[k]) { transpose(H, V, *w2[k], w.w2t[k]); *w2[k] = w.w2t[k]; }
    for (int64_t s = 0; s < steps; s++) {
        const int64_t *Xs = X + s * B * T, *Ys = Y + s * B;
        losses[s] = forward(&m, &w, Xs, Ys);
        backward(&m, &w, Xs);
        if (m.batchnorm) running_stats(&m, &w);
        if (m.opt == 1) adamw(&m, &w, lr[s]);
        else sgd(&m, &w, lr[s]);
        m.opt_steps++;
    }
    float *orig[3] = {n->param[P_W2], n->state1[P_W2], n->state2[P_W2]};
    for (int k = 0; k < 3; k++)
        if (orig[k]) transpose(V, H, w.w2t[k], orig[k]);
    n->opt_steps = m.opt_steps;
    free(ints);
    free(block);
    return 0;
}
