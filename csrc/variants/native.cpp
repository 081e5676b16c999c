// The ops and CPU kernels compiled for the build machine's ISA (-march from ARL_FAST_MARCH), built only when that is set: module arl_fast._C_native (flags in setup.py).
#define ARL_FAST_MODULE _C_native
#include "../ops.cpp"
#include "../cpu/bf16_gemm.cpp"
#include "../cpu/contrastive_loss.cpp"
