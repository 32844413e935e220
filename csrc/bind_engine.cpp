// Placeholder until the engine subsystem binds itself here.
#include <pybind11/pybind11.h>

void bind_engine(pybind11::module_&) {}
