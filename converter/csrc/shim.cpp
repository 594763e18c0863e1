// A thin C ABI over the parts of libtorch that tch does not expose.
//
// Every entry point catches C++ exceptions and hands the message back to Rust through
// `yolots_take_error`, so a failure inside libtorch becomes a Rust error, never an abort.
// Functions returning a pointer return null on failure; functions returning int return
// 0 on success and -1 on failure.
//
// Ownership: every `Module*`, `Cu*` and `Mobile*` returned here is owned by the caller
// and freed with the matching `*_free`. Tensors cross as `at::Tensor*` (what tch's
// `Tensor::as_ptr` gives); tensors handed back are `new at::Tensor` that tch frees.

#include <torch/script.h>
#include <torch/torch.h>
#include <ATen/Version.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/mobile/import.h>
#include <torch/csrc/jit/mobile/module.h>
#include <torch/csrc/jit/passes/frozen_concat_linear.h>
#include <torch/csrc/jit/passes/frozen_conv_add_relu_fusion.h>
#include <torch/csrc/jit/passes/frozen_linear_transpose.h>
#include <torch/csrc/jit/passes/xnnpack_rewrite.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {
thread_local std::string last_error;

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}

// `what()` of c10 errors carries a C++ backtrace after the message; keep the message.
std::string message_of(const c10::Error& e) { return e.what_without_backtrace(); }

std::vector<std::string> strings(const char* const* items, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.emplace_back(items[i]);
  return out;
}

torch::jit::ExtraFilesMap extra_files(const char* const* names, const char* const* data,
                                      const size_t* lens, int n) {
  torch::jit::ExtraFilesMap files;
  for (int i = 0; i < n; ++i) files[names[i]] = std::string(data[i], lens[i]);
  return files;
}

// Appends every tensor found in `value` (a tensor, or lists/tuples of them) to `out`.
void flatten(const c10::IValue& value, std::vector<at::Tensor>& out) {
  if (value.isTensor()) {
    out.push_back(value.toTensor());
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorVector()) out.push_back(t);
  } else if (value.isList()) {
    for (const c10::IValue& v : value.toListRef()) flatten(v, out);
  } else if (value.isTuple()) {
    for (const c10::IValue& v : value.toTupleRef().elements()) flatten(v, out);
  } else {
    throw std::runtime_error("method returned a value that is not made of tensors: " +
                             value.tagKind());
  }
}
}  // namespace

#define YOLOTS_GUARD(failure, ...)           \
  try {                                      \
    __VA_ARGS__                              \
  } catch (const c10::Error& e) {            \
    last_error = message_of(e);              \
    return failure;                          \
  } catch (const std::exception& e) {        \
    last_error = e.what();                   \
    return failure;                          \
  } catch (...) {                            \
    last_error = "unknown C++ exception";    \
    return failure;                          \
  }

using torch::jit::Module;
using Cu = std::shared_ptr<torch::jit::CompilationUnit>;
using TensorSink = std::vector<at::Tensor>;

extern "C" {

// The message of the last failed call on this thread (malloc'ed, free with yolots_free_string).
char* yolots_take_error() { return copy_string(last_error); }

void yolots_free_string(char* s) { std::free(s); }

// libtorch's build configuration, read from the library loaded at run time.
char* yolots_show_config() {
  YOLOTS_GUARD(nullptr, { return copy_string(at::show_config()); })
}

// ---- compilation units and modules ------------------------------------------------------

Cu* yolots_cu_new() {
  YOLOTS_GUARD(nullptr, { return new Cu(std::make_shared<torch::jit::CompilationUnit>()); })
}

void yolots_cu_free(Cu* cu) { delete cu; }

// A module of a new class `qualified_name` registered in `cu` (fails if the name is taken).
Module* yolots_module_new(Cu* cu, const char* qualified_name) {
  YOLOTS_GUARD(nullptr, {
    return new Module(c10::QualifiedName(qualified_name), *cu, /*shouldMangle=*/false);
  })
}

// A new, empty module of the same class as `like` (it shares its methods).
Module* yolots_module_instance(const Module* like) {
  YOLOTS_GUARD(nullptr, {
    return new Module(like->_ivalue()->compilation_unit(), like->type());
  })
}

void yolots_module_free(Module* m) { delete m; }

int yolots_module_register_tensor(Module* m, const char* name, const at::Tensor* t,
                                  int is_buffer) {
  YOLOTS_GUARD(-1, {
    if (is_buffer) {
      m->register_buffer(name, *t);
    } else {
      m->register_parameter(name, *t, /*is_buffer=*/false);
    }
    return 0;
  })
}

int yolots_module_register_module(Module* m, const char* name, const Module* child) {
  YOLOTS_GUARD(-1, {
    m->register_module(name, *child);
    return 0;
  })
}

int yolots_module_set_bool(Module* m, const char* name, int value) {
  YOLOTS_GUARD(-1, {
    m->register_attribute(name, c10::BoolType::get(), c10::IValue(value != 0));
    return 0;
  })
}

int yolots_module_set_int(Module* m, const char* name, int64_t value) {
  YOLOTS_GUARD(-1, {
    m->register_attribute(name, c10::IntType::get(), c10::IValue(value));
    return 0;
  })
}

int yolots_module_set_float(Module* m, const char* name, double value) {
  YOLOTS_GUARD(-1, {
    m->register_attribute(name, c10::FloatType::get(), c10::IValue(value));
    return 0;
  })
}

int yolots_module_set_ints(Module* m, const char* name, const int64_t* values, int n) {
  YOLOTS_GUARD(-1, {
    c10::List<int64_t> list;
    for (int i = 0; i < n; ++i) list.push_back(values[i]);
    m->register_attribute(name, c10::ListType::ofInts(), c10::IValue(list));
    return 0;
  })
}

int yolots_module_set_floats(Module* m, const char* name, const double* values, int n) {
  YOLOTS_GUARD(-1, {
    c10::List<double> list;
    for (int i = 0; i < n; ++i) list.push_back(values[i]);
    m->register_attribute(name, c10::ListType::ofFloats(), c10::IValue(list));
    return 0;
  })
}

int yolots_module_set_strings(Module* m, const char* name, const char* const* values, int n) {
  YOLOTS_GUARD(-1, {
    c10::List<std::string> list;
    for (int i = 0; i < n; ++i) list.push_back(values[i]);
    m->register_attribute(name, c10::ListType::ofStrings(), c10::IValue(list));
    return 0;
  })
}

// Compiles TorchScript source into methods of the module's class.
int yolots_module_define(Module* m, const char* src) {
  YOLOTS_GUARD(-1, {
    m->define(src);
    return 0;
  })
}

int yolots_module_save(const Module* m, const char* path, const char* const* names,
                       const char* const* data, const size_t* lens, int n) {
  YOLOTS_GUARD(-1, {
    m->save(path, extra_files(names, data, lens, n));
    return 0;
  })
}

int yolots_module_save_for_mobile(const Module* m, const char* path, const char* const* names,
                                  const char* const* data, const size_t* lens, int n) {
  YOLOTS_GUARD(-1, {
    m->_save_for_mobile(path, extra_files(names, data, lens, n));
    return 0;
  })
}

// `torch.jit.freeze`, keeping `preserved` methods and attributes besides `forward`.
Module* yolots_module_freeze(const Module* m, const char* const* preserved, int n) {
  YOLOTS_GUARD(nullptr, {
    return new Module(torch::jit::freeze(*m, strings(preserved, n), /*optimize_numerics=*/true));
  })
}

// The passes of `torch.jit.optimize_for_inference` whose result libtorch can save, run
// on a frozen module in place: conv/add/relu fusion, linear transposes, concatenated
// linears. The conversion to MKLDNN layouts is left out: a module holding MKLDNN
// tensors cannot be saved (`torch.jit.load` then fails).
int yolots_module_optimize_frozen(Module* m, const char* const* methods, int n) {
  YOLOTS_GUARD(-1, {
    std::vector<std::string> names = strings(methods, n);
    names.insert(names.begin(), "forward");
    for (const std::string& name : names) {
      auto graph = m->get_method(name).graph();
      torch::jit::FuseFrozenConvAddRelu(graph);
      torch::jit::FrozenLinearTranspose(graph);
      torch::jit::FrozenConcatLinear(graph);
    }
    return 0;
  })
}

// Lays a 4-d floating-point tensor out channels-last in place: the tensor keeps its
// identity (every module and network holding it sees the new layout; a tracer still maps
// it to the attribute it is registered as) and moves to new storage; the old storage goes
// with its last user. oneDNN and cuDNN convolutions run faster on this layout.
int yolots_tensor_channels_last(const at::Tensor* t) {
  YOLOTS_GUARD(-1, {
    if (t->dim() == 4 && t->is_floating_point() &&
        !t->is_contiguous(at::MemoryFormat::ChannelsLast)) {
      at::NoGradGuard no_grad;
      t->set_(t->contiguous(at::MemoryFormat::ChannelsLast));
    }
    return 0;
  })
}

// `torch.utils.mobile_optimizer.optimize_for_mobile`, keeping `methods` besides `forward`.
Module* yolots_module_optimize_for_mobile(const Module* m, const char* const* methods, int n) {
  YOLOTS_GUARD(nullptr, {
    return new Module(torch::jit::optimizeForMobile(*m, {}, strings(methods, n)));
  })
}

// The graphs of the module's methods (for debug logs).
char* yolots_module_graphs(const Module* m) {
  YOLOTS_GUARD(nullptr, {
    std::ostringstream out;
    for (const auto& method : m->get_methods()) {
      out << "# " << method.name() << "\n" << method.graph()->toString() << "\n";
    }
    return copy_string(out.str());
  })
}

// ---- tracing ------------------------------------------------------------------------------

// Called by the tracer with the traced inputs; pushes outputs with `yolots_sink_push`.
// Returns 0 on success; on failure the callee has stored a message with `yolots_set_error`.
typedef int (*yolots_trace_fn)(void* ctx, const at::Tensor* const* inputs, int n,
                               TensorSink* outputs);

void yolots_set_error(const char* message) { last_error = message; }

void yolots_sink_push(TensorSink* sink, const at::Tensor* t) { sink->push_back(*t); }

// Traces `fn` over `inputs` into a new method `name` of `m`. Tensors that are registered
// on `m` (or its submodules) and used by `fn` become attribute reads, not constants.
// The method returns the pushed outputs as one `List[Tensor]`.
int yolots_module_trace(Module* m, const char* name, const at::Tensor* const* inputs, int n,
                        yolots_trace_fn fn, void* ctx) {
  YOLOTS_GUARD(-1, {
    torch::jit::Stack stack;
    for (int i = 0; i < n; ++i) stack.emplace_back(*inputs[i]);
    auto traced = [fn, ctx](torch::jit::Stack in) -> torch::jit::Stack {
      std::vector<at::Tensor> tensors;
      std::vector<const at::Tensor*> ptrs;
      for (const c10::IValue& v : in) tensors.push_back(v.toTensor());
      for (const at::Tensor& t : tensors) ptrs.push_back(&t);
      TensorSink outputs;
      if (fn(ctx, ptrs.data(), static_cast<int>(ptrs.size()), &outputs) != 0) {
        throw std::runtime_error(last_error);
      }
      c10::List<at::Tensor> list;
      for (const at::Tensor& t : outputs) list.push_back(t);
      return {c10::IValue(list)};
    };
    auto no_names = [](const at::Tensor&) { return std::string(); };
    auto result = torch::jit::tracer::trace(std::move(stack), traced, no_names,
                                            /*strict=*/false, /*force_outplace=*/false, m);
    auto graph = result.first->graph;
    auto qualified = c10::QualifiedName(*m->type()->name(), name);
    auto function = m->_ivalue()->compilation_unit()->create_function(qualified, graph);
    m->type()->addMethod(function);
    return 0;
  })
}

// ---- the mobile (lite) interpreter --------------------------------------------------------

using Mobile = torch::jit::mobile::Module;

Mobile* yolots_mobile_load(const char* path) {
  YOLOTS_GUARD(nullptr, { return new Mobile(torch::jit::_load_for_mobile(path)); })
}

void yolots_mobile_free(Mobile* m) { delete m; }

// An argument of a method call: a tensor, a float or an int.
struct YolotsArg {
  int kind;  // 0 tensor, 1 float, 2 int
  const at::Tensor* tensor;
  double f;
  int64_t i;
};

// Runs `method` and hands back every tensor of its result as `new at::Tensor`
// (malloc'ed array, freed with `yolots_free_tensor_array` after taking the tensors).
int yolots_mobile_run(Mobile* m, const char* method, const YolotsArg* args, int nargs,
                      at::Tensor*** out, int* nout) {
  YOLOTS_GUARD(-1, {
    std::vector<c10::IValue> inputs;
    for (int i = 0; i < nargs; ++i) {
      switch (args[i].kind) {
        case 0: inputs.emplace_back(*args[i].tensor); break;
        case 1: inputs.emplace_back(args[i].f); break;
        default: inputs.emplace_back(args[i].i); break;
      }
    }
    c10::IValue result = m->get_method(method)(inputs);
    std::vector<at::Tensor> tensors;
    flatten(result, tensors);
    auto** array = static_cast<at::Tensor**>(std::malloc(sizeof(at::Tensor*) * (tensors.size() + 1)));
    if (array == nullptr) throw std::bad_alloc();
    for (size_t i = 0; i < tensors.size(); ++i) array[i] = new at::Tensor(tensors[i]);
    *out = array;
    *nout = static_cast<int>(tensors.size());
    return 0;
  })
}

void yolots_free_tensor_array(at::Tensor** array) { std::free(array); }

}  // extern "C"
