/* The core's FMA peak, for charmlp-bench: CHAINS independent vector FMA chains, enough to
 * cover FMA latency on every FMA unit, at the vector width the native engine is built for
 * (same compiler and flags: 16 lanes under AVX-512, else 8). */
#pragma GCC optimize("fp-contract=fast")
#include <stdint.h>
#if defined(__AVX512F__)
#define VL 16
#else
#define VL 8
#endif
#define CHAINS 12
typedef float vf __attribute__((vector_size(4 * VL)));

/* iters rounds of CHAINS FMAs; returns the flops done. *sink gets a sum so nothing is
 * optimised away. */
double charmlp_peak(int64_t iters, float *sink) {
    vf acc[CHAINS], m, a;
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < VL; l++) acc[c][l] = 1.0f + 1e-3f * (float)(c + l);
    for (int l = 0; l < VL; l++) { m[l] = 0.999999f; a[l] = 1e-7f; }
    for (int64_t i = 0; i < iters; i++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * m + a;
        __asm__ volatile("" : "+x"(m));  /* m is "new" each round: no hoisting or folding */
    }
    vf s = acc[0];
    for (int c = 1; c < CHAINS; c++) s += acc[c];
    float t = 0.0f;
    for (int l = 0; l < VL; l++) t += s[l];
    *sink = t;
    return 2.0 * VL * CHAINS * (double)iters;
}
