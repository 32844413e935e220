// pybind11 glue only: each subsystem binds itself in its own bind_*.cpp.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_formats(py::module_& m);
void bind_engine(py::module_& m);

PYBIND11_MODULE(_native, m) {
  m.doc() = "azsim native core: weight codecs and the cycle-approximate engine";
  bind_formats(m);
  bind_engine(m);
}
