// pybind11 glue for the engine: config dict + arrays in, arrays + a counter
// matrix out. Python (azsim/compile.py, azsim/engine.py) owns the API shape.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "azsim/engine.hpp"

namespace py = pybind11;
using namespace azsim;

namespace {

HwConfig config_from_dict(const py::dict& d) {
  HwConfig c;
  auto f = [&](const char* key) { return d[key].cast<double>(); };
  auto i = [&](const char* key) { return d[key].cast<int64_t>(); };
  c.clock_hz = f("clock_hz");
  c.rows = static_cast<int>(i("rows"));
  c.cols = static_cast<int>(i("cols"));
  c.bits = static_cast<int>(i("bits"));
  std::string df = d["dataflow"].cast<std::string>();
  c.dataflow = df == "os" ? DataflowKind::OS : (df == "is" ? DataflowKind::IS : DataflowKind::WS);
  std::string z = d["zero"].cast<std::string>();
  c.zero = z == "skip" ? ZeroMode::Skip : (z == "gate" ? ZeroMode::Gate : ZeroMode::None);
  c.weight_sram_bytes = i("weight_sram_bytes");
  c.act_sram_bytes = i("act_sram_bytes");
  c.offchip_bytes_per_cycle = f("offchip_bytes_per_cycle");
  c.offchip_latency_cycles = i("offchip_latency_cycles");
  c.offchip_burst_bytes = i("offchip_burst_bytes");
  c.offchip_pj_per_byte = f("offchip_pj_per_byte");
  c.decoder_bytes_per_cycle = f("decoder_bytes_per_cycle");
  c.decoder_weights_per_cycle = f("decoder_weights_per_cycle");
  c.decoder_formats = d["decoder_formats"].cast<std::vector<std::string>>();
  c.vector_lanes = static_cast<int>(i("vector_lanes"));
  c.mac_pj = f("mac_pj");
  c.mac_gated_pj = f("mac_gated_pj");
  c.weight_sram_pj_per_byte = f("weight_sram_pj_per_byte");
  c.act_sram_pj_per_byte = f("act_sram_pj_per_byte");
  c.decode_pj_per_byte = f("decode_pj_per_byte");
  c.vector_pj_per_op = f("vector_pj_per_op");
  c.leakage_mw = f("leakage_mw");
  c.host_mflops = f("host_mflops");
  return c;
}

DType dtype_of(const std::string& s) {
  if (s == "int8") return DType::I8;
  if (s == "int16") return DType::I16;
  if (s == "int32") return DType::I32;
  throw std::invalid_argument("dtype: '" + s + "' (allowed: int8, int16, int32)");
}

template <typename T>
std::vector<T> vec_of(const py::dict& p, const char* key) {
  if (!p.contains(key) || p[key].is_none()) return {};
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(p[key]);
  return std::vector<T>(a.data(), a.data() + a.size());
}

OpKind kind_of(const std::string& s) {
  if (s == "matmul") return OpKind::MatMul;
  if (s == "add") return OpKind::Add;
  if (s == "mul") return OpKind::Mul;
  if (s == "lut") return OpKind::Lut;
  if (s == "requant") return OpKind::Requant;
  if (s == "lstm") return OpKind::Lstm;
  if (s == "embed") return OpKind::Embed;
  throw std::invalid_argument("op kind: '" + s + "' unknown");
}

void fill_buffer(Buffer& b, DType want, py::array a, int64_t cols) {
  if (a.ndim() != 2 || a.shape(1) != cols)
    throw std::invalid_argument("input: expected shape (rows, " + std::to_string(cols) + ")");
  b.resize(want, a.shape(0), cols);
  if (a.itemsize() != dtype_bytes(want) || !(a.flags() & py::array::c_style))
    throw std::invalid_argument("input: wrong dtype or not C-contiguous");
  std::memcpy(b.data(), a.data(), static_cast<size_t>(b.size()) * dtype_bytes(want));
}

py::array to_array(Buffer& b) {
  std::vector<py::ssize_t> shape{b.rows, b.cols};
  switch (b.dtype) {
    case DType::I8: {
      py::array_t<int8_t> a(shape);
      std::memcpy(a.mutable_data(), b.i8.data(), static_cast<size_t>(b.size()));
      return a;
    }
    case DType::I16: {
      py::array_t<int16_t> a(shape);
      std::memcpy(a.mutable_data(), b.i16.data(), static_cast<size_t>(b.size()) * 2);
      return a;
    }
    default: {
      py::array_t<int32_t> a(shape);
      std::memcpy(a.mutable_data(), b.i32.data(), static_cast<size_t>(b.size()) * 4);
      return a;
    }
  }
}

}  // namespace

void bind_engine(py::module_& m) {
  m.def("engine_counter_names", []() {
    std::vector<std::string> v;
    for (int i = 0; i < kNumCounters; ++i) v.emplace_back(counter_name(i));
    return v;
  });

  py::class_<Program, std::shared_ptr<Program>>(m, "EngineProgram")
      .def(py::init([](const py::dict& cfg) { return std::make_shared<Program>(config_from_dict(cfg)); }))
      .def("add_tensor", [](Program& p, const std::string& name, const std::string& dtype,
                            int64_t cols) { return p.add_tensor(name, dtype_of(dtype), cols); })
      .def("add_weight",
           [](Program& p, const std::string& name, py::array_t<int8_t, py::array::c_style> w,
              int bits, const std::string& format, int64_t tile_n, int64_t tile_k, int codebook_k) {
             if (w.ndim() != 2) throw std::invalid_argument(name + ": weight must be 2-D (N, K)");
             return p.add_weight(name, w.data(), w.shape(0), w.shape(1), bits, format, tile_n,
                                 tile_k, codebook_k);
           })
      .def("weight_tiles",
           [](const Program& p, int wid) {
             const Weight& W = p.weights().at(wid);
             size_t n = W.tiles.size();
             py::array_t<int64_t> bytes(n), dec(n), n0(n), n1(n), k0(n), k1(n);
             for (size_t t = 0; t < n; ++t) {
               const Tile& T = W.tiles[t];
               bytes.mutable_at(t) = static_cast<int64_t>(T.bytes);
               dec.mutable_at(t) = static_cast<int64_t>(T.decode_cycles);
               n0.mutable_at(t) = T.n0;
               n1.mutable_at(t) = T.n1;
               k0.mutable_at(t) = T.k0;
               k1.mutable_at(t) = T.k1;
             }
             py::dict d;
             d["bytes"] = bytes;
             d["decode_cycles"] = dec;
             d["n0"] = n0;
             d["n1"] = n1;
             d["k0"] = k0;
             d["k1"] = k1;
             return d;
           })
      .def("decoded_weight",
           [](const Program& p, int wid) {
             const Weight& W = p.weights().at(wid);
             py::array_t<int8_t> a(std::vector<py::ssize_t>{W.N, W.K});
             std::memcpy(a.mutable_data(), W.w.data(), W.w.size());
             return a;
           })
      .def("set_resident", &Program::set_resident)
      .def("add_op", [](Program& p, const std::string& kind, const std::string& name,
                        std::vector<int> in, std::vector<int> out, const py::dict& prm) {
        Op op;
        op.kind = kind_of(kind);
        op.name = name;
        op.in = std::move(in);
        op.out = std::move(out);
        auto geti = [&](const char* key, int64_t dflt) {
          return prm.contains(key) ? prm[key].cast<int64_t>() : dflt;
        };
        op.weight = static_cast<int>(geti("weight", -1));
        op.weight2 = static_cast<int>(geti("weight2", -1));
        op.bias = vec_of<int32_t>(prm, "bias");
        op.mult = vec_of<int32_t>(prm, "mult");
        op.shift = vec_of<int32_t>(prm, "shift");
        op.mult2 = vec_of<int32_t>(prm, "mult2");
        op.shift2 = vec_of<int32_t>(prm, "shift2");
        op.table = vec_of<int16_t>(prm, "table");
        op.table2 = vec_of<int16_t>(prm, "table2");
        op.requant = geti("requant", 1) != 0;
        op.out_dtype = dtype_of(prm.contains("out_dtype") ? prm["out_dtype"].cast<std::string>()
                                                          : std::string("int8"));
        op.ma = geti("ma", 0);
        op.mb = geti("mb", 0);
        op.sh = static_cast<int>(geti("sh", 1));
        op.h_mult = geti("h_mult", 0);
        op.h_shift = static_cast<int>(geti("h_shift", 1));
        op.hidden = geti("hidden", 0);
        return p.add_op(std::move(op));
      });

  py::class_<Session>(m, "EngineSession")
      .def(py::init([](std::shared_ptr<Program> p) {
             return std::make_unique<Session>(std::shared_ptr<const Program>(p));
           }),
           py::keep_alive<1, 2>())
      .def("reset", &Session::reset)
      .def_property_readonly("free_cycle", &Session::free_cycle)
      .def("run",
           [](Session& s, const std::vector<int>& in_ids, const std::vector<py::array>& arrays,
              const std::vector<int>& in_cols, const std::vector<std::string>& in_dtypes,
              const std::vector<int>& out_ids, const std::vector<int>& op_ids,
              uint64_t start_cycle) {
             for (size_t i = 0; i < in_ids.size(); ++i)
               fill_buffer(s.buffer(in_ids[i]), dtype_of(in_dtypes[i]), arrays[i], in_cols[i]);
             RunResult r;
             {
               py::gil_scoped_release nogil;
               r = s.run(start_cycle, op_ids);
             }
             py::list outs;
             for (int id : out_ids) outs.append(to_array(s.buffer(id)));
             py::array_t<double> counters(std::vector<py::ssize_t>{
                 static_cast<py::ssize_t>(r.per_op.size()), kNumCounters});
             for (size_t i = 0; i < r.per_op.size(); ++i)
               std::memcpy(counters.mutable_data(i, 0), r.per_op[i].data(),
                           sizeof(double) * kNumCounters);
             return py::make_tuple(outs, counters, r.start_cycle, r.end_cycle);
           });
}
