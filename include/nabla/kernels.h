/* nabla/kernels.h — the dense kernels the ops run on, usable directly. */
#ifndef NABLA_KERNELS_H
#define NABLA_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/* C = alpha * op(A) op(B) + beta * C, all row-major.
 * op(A) is M x K: A is M x K (lda >= K) or, if transa, K x M (lda >= M).
 * op(B) is K x N: B is K x N (ldb >= N) or, if transb, N x K (ldb >= K).
 * C is M x N (ldc >= N). beta == 0 ignores C's old contents (NaN too).
 * Packed Goto/BLIS-style GEMM with AVX-512 or AVX2 micro-kernels chosen at
 * run time, on nb_get_threads() threads (the caller and the helper threads
 * of the library's pool, which sleep when idle; one thread inside a task of
 * that pool, or while another thread's parallel work holds it).
 * The result does not depend on the thread count. */
void nb_gemm(int transa, int transb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);
/* The plain triple loop (double accumulation) the tests compare against. */
void nb_gemm_ref(int transa, int transb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);
/* "avx512", "avx2" or "scalar": the micro-kernel nb_gemm uses here. */
const char *nb_gemm_isa(void);

#ifdef __cplusplus
}
#endif
#endif
