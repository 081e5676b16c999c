// The ops and CPU kernels compiled for AVX2 + FMA (-mavx2 -mfma -mf16c): module arl_fast._C_avx2 (flags in setup.py).
#define ARL_FAST_MODULE _C_avx2
#include "../ops.cpp"
#include "../cpu/bf16_gemm.cpp"
#include "../cpu/contrastive_loss.cpp"
