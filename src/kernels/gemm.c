/* TEMPORARY dispatcher until the packed GEMM lands: calls the reference. */
#include "../core/internal.h"

void nb_gemm(int transa, int transb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    nb_gemm_ref(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char *nb_gemm_isa(void) { return "scalar"; }
