// The ops and CPU kernels compiled for AVX-512 F/BW/VL/DQ + FMA, as PyTorch's own AVX512 kernels: module arl_fast._C_avx512 (flags in setup.py).
#define ARL_FAST_MODULE _C_avx512
#include "../ops.cpp"
#include "../cpu/bf16_gemm.cpp"
#include "../cpu/contrastive_loss.cpp"
