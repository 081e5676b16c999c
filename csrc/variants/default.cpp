// The ops and CPU kernels compiled for baseline target of the compiler (x86-64: SSE2; elsewhere, e.g. aarch64, its default): module arl_fast._C_default (flags in setup.py).
#define ARL_FAST_MODULE _C_default
#include "../ops.cpp"
#include "../cpu/bf16_gemm.cpp"
#include "../cpu/contrastive_loss.cpp"
