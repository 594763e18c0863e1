// A thin C ABI over the parts of libtorch that tch does not expose.
//
// Every entry point catches C++ exceptions and hands the message back to Rust through
// `yolots_take_error`, so a failure inside libtorch becomes a Rust error, never an abort.

#include <torch/torch.h>
#include <ATen/Version.h>

#include <cstring>
#include <string>

namespace {
thread_local std::string last_error;

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, s.c_str(), s.size() + 1);
  }
  return out;
}
}  // namespace

#define YOLOTS_GUARD(failure, body)          \
  try {                                      \
    body                                     \
  } catch (const std::exception& e) {        \
    last_error = e.what();                   \
    return failure;                          \
  } catch (...) {                            \
    last_error = "unknown C++ exception";    \
    return failure;                          \
  }

extern "C" {

// The message of the last failed call on this thread (malloc'ed, free with yolots_free_string).
char* yolots_take_error() { return copy_string(last_error); }

void yolots_free_string(char* s) { std::free(s); }

// libtorch's build configuration, read from the library loaded at run time.
char* yolots_show_config() {
  YOLOTS_GUARD(nullptr, { return copy_string(at::show_config()); })
}

}  // extern "C"
