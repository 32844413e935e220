// Placeholder until the formats subsystem binds itself here.
#include <pybind11/pybind11.h>

void bind_formats(pybind11::module_&) {}
