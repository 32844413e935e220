// Thin binding of the weight codecs as azsim._native.formats. Codec errors
// become azsim.errors.FormatError; std::invalid_argument (bad parameters,
// unrepresentable weights, unknown format) becomes azsim.errors.ConfigError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "azsim/formats/format.hpp"

namespace py = pybind11;
namespace fm = azsim::formats;

namespace {

void raise_as(const char* cls, const char* what) {
  py::object err = py::module_::import("azsim.errors").attr(cls);
  PyErr_SetString(err.ptr(), what);
}

struct Bytes {
  const uint8_t* data;
  size_t size;
};

Bytes view_bytes(const py::buffer_info& info) {
  if (info.ndim > 1 || (info.ndim == 1 && info.itemsize != 1 && info.size > 0))
    throw std::invalid_argument("data: expected a 1-D byte buffer (bytes, bytearray, uint8 array)");
  if (info.ndim == 1 && info.strides[0] != info.itemsize && info.size > 1)
    throw std::invalid_argument("data: expected a contiguous byte buffer");
  return {static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size * info.itemsize)};
}

}  // namespace

void bind_formats(py::module_& root) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fm::FormatError& e) {
      raise_as("FormatError", e.what());
    } catch (const std::invalid_argument& e) {
      raise_as("ConfigError", e.what());
    }
  });

  py::module_ m = root.def_submodule("formats", "bit-exact weight codecs");

  m.def("codec_names", &fm::codec_names, "Names of the weight formats, in registry order.");

  m.def(
      "encode",
      [](const std::string& fmt, py::array_t<int8_t, py::array::c_style> w, int value_bits,
         int codebook_k) {
        const fm::Codec& c = fm::codec(fmt);
        fm::EncodeParams p;
        p.value_bits = value_bits;
        p.codebook_k = codebook_k;
        std::vector<uint8_t> out;
        {
          py::gil_scoped_release nogil;
          out = c.encode(w.data(), static_cast<size_t>(w.size()), p);
        }
        return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
      },
      py::arg("fmt"), py::arg("w"), py::arg("value_bits") = 8, py::arg("codebook_k") = 16,
      "Encodes int8 weights (flattened in C order); returns the exact stream.");

  m.def(
      "decode",
      [](const std::string& fmt, py::buffer data, size_t n) {
        const fm::Codec& c = fm::codec(fmt);
        py::buffer_info info = data.request();
        Bytes b = view_bytes(info);
        py::array_t<int8_t> out(static_cast<py::ssize_t>(n));
        int8_t* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          c.decode(b.data, b.size, o, n);
        }
        return out;
      },
      py::arg("fmt"), py::arg("data"), py::arg("n"),
      "Decodes exactly n weights; raises FormatError on a malformed stream.");

  m.def(
      "decode_cycles",
      [](const std::string& fmt, py::buffer data, size_t n, double bytes_per_cycle,
         double weights_per_cycle) {
        const fm::Codec& c = fm::codec(fmt);
        py::buffer_info info = data.request();
        Bytes b = view_bytes(info);
        return c.decode_cycles(b.data, b.size, n, bytes_per_cycle, weights_per_cycle);
      },
      py::arg("fmt"), py::arg("data"), py::arg("n"), py::arg("bytes_per_cycle"),
      py::arg("weights_per_cycle"),
      "Cycles of the on-chip decoder for this stream.");
}
