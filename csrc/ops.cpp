// Schemas of the ops in the arl_fast namespace and the Python module stub that lets `import arl_fast._C` load them.
// Kernels register per device: cpu/ holds the CPU kernels (a cuda/ folder can join with TORCH_LIBRARY_IMPL(..., CUDA)).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(arl_fast, m) {
  // Losses of levels [first_level, first_level + num_levels) of TS2Vec's hierarchical loss, and the per-row
  // log-sum-exp the backward recomputes from (layout: see cpu/contrastive_loss.cpp).
  m.def(
      "cpp_level_losses(Tensor z1, Tensor z2, int first_level, int num_levels, float alpha, int temporal_unit)"
      " -> (Tensor, Tensor)");
  // Gradients of sum(grad_losses * losses) with respect to z1 and z2.
  m.def(
      "cpp_level_losses_backward(Tensor grad_losses, Tensor z1, Tensor z2, Tensor lse, int first_level,"
      " int num_levels, float alpha, int temporal_unit) -> (Tensor, Tensor)");
}

extern "C" {
// A module with no methods: importing it runs the registrations above.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
