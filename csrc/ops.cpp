// Schemas of the ops in the arl_fast namespace and the Python module stub whose import loads them.
// Kernels register per device: cpu/ holds the CPU kernels (a cuda/ folder can join with TORCH_LIBRARY_IMPL(..., CUDA)).
// Each ISA variant is one translation unit (variants/*.cpp) that includes this file and the kernels, built as its own
// module arl_fast.ARL_FAST_MODULE (e.g. _C_avx512); arl_fast.backends.cpp imports exactly one of them.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(arl_fast, m) {
  // Losses of levels [first_level, first_level + num_levels) of TS2Vec's hierarchical loss, and the per-row
  // softmax statistics (maximum and log-sum) the backward recomputes from (layout: see cpu/contrastive_loss.cpp).
  m.def(
      "cpp_level_losses(Tensor z1, Tensor z2, int first_level, int num_levels, float alpha, int temporal_unit)"
      " -> (Tensor, Tensor)");
  // Gradients of sum(grad_losses * losses) with respect to z1 and z2.
  m.def(
      "cpp_level_losses_backward(Tensor grad_losses, Tensor z1, Tensor z2, Tensor row_stats, int first_level,"
      " int num_levels, float alpha, int temporal_unit) -> (Tensor, Tensor)");
}

#ifndef ARL_FAST_MODULE
#error "ARL_FAST_MODULE (the module's name) is defined by the variant file that includes ops.cpp"
#endif
#define ARL_FAST_CONCAT_(a, b) a##b
#define ARL_FAST_CONCAT(a, b) ARL_FAST_CONCAT_(a, b)
#define ARL_FAST_STRING_(a) #a
#define ARL_FAST_STRING(a) ARL_FAST_STRING_(a)

extern "C" {
// A module with no methods: importing it runs the registrations above.
PyObject* ARL_FAST_CONCAT(PyInit_, ARL_FAST_MODULE)(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, ARL_FAST_STRING(ARL_FAST_MODULE), nullptr, -1,
                                          nullptr};
  return PyModule_Create(&module_def);
}
}
